# The workflow's verbs (seed 002), each a thin name for the command it runs.
# The README's two commands stay the way in:
#   cargo run --release -p emporium -- up     (make dev, optimised)
#   cargo test --workspace                    (make test)
# `make help` lists the verbs.

CARGO          ?= cargo
IMAGE          ?= emporium:0.1.0
COMPOSE_DIR    := deploy/compose
COMPOSE_ENV    := $(COMPOSE_DIR)/.env
COMPOSE        ?= docker compose
COMPOSE_ARGS   := -f $(COMPOSE_DIR)/docker-compose.yml --env-file $(COMPOSE_ENV)

.DEFAULT_GOAL := help
.PHONY: help setup install-deps proto dev build test lint docker-build docker-run \
        services-start services-stop services-restart clean ci deploy-check

help: ## List the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

setup: install-deps proto ## First time on a machine: dependencies fetched, generated code built, the Compose env file made
	@test -f $(COMPOSE_ENV) || { cp $(COMPOSE_DIR)/.env.example $(COMPOSE_ENV); \
	  echo "made $(COMPOSE_ENV) from the example: change its secrets before exposing the stack"; }

install-deps: ## Fetch every crate the workspace needs (Rust is the only requirement)
	$(CARGO) fetch --locked

proto: ## Build the gRPC code from crates/proto/proto (its build script; no protoc needed)
	$(CARGO) build -p emporium-proto

dev: ## The whole shop in one process on embedded stores: http://127.0.0.1:8080/
	$(CARGO) run -p emporium -- up

build: ## The release binary, target/release/emporium
	$(CARGO) build --release -p emporium

test: ## The tests; suites needing a server skip and say why unless its EMPORIUM_TEST_*_URL is set
	$(CARGO) test --workspace

lint: ## Formatting and clippy, as CI runs them
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

docker-build: ## The one image for every service, tagged $(IMAGE)
	docker build -f deploy/docker/Dockerfile -t $(IMAGE) .

docker-run: ## The demo (emporium up) in one container, its data in a volume: http://127.0.0.1:8080/
	docker run --rm -it --read-only --tmpfs /tmp -p 8080:8080 -v emporium-demo:/var/lib/emporium $(IMAGE)

services-start: $(COMPOSE_ENV) ## The distributed stack in Docker Compose (services, stores, observability)
	$(COMPOSE) $(COMPOSE_ARGS) up -d

services-stop: ## Stop the Compose stack (volumes kept)
	$(COMPOSE) $(COMPOSE_ARGS) down

services-restart: services-stop services-start ## Stop, then start the Compose stack

$(COMPOSE_ENV):
	@echo "$(COMPOSE_ENV) is missing: run make setup (it copies .env.example), then set its secrets" >&2
	@exit 1

clean: ## Remove build output (the shop's data in ./data stays: delete it to start afresh)
	$(CARGO) clean

.PHONY: bench
bench: ## Issue 24's table: every path beside its baseline, in one run on loopback (ARGS="--cold-build" and the like)
	bench/run $(ARGS)

deploy-check: ## Check the deploy files with the tools that read them (observability, Compose, Kubernetes)
	deploy/observability/check
	deploy/compose/check
	deploy/k8s/check

ci: ## Everything CI runs, on the real servers of this machine
	.ci/run
