//! The OpenAPI 3.1 description of payment's public routes; the gateway
//! merges it into the one document it serves.

use emporium_platform::openapi::{
    ok, page_params, param, problem, with_body_problems, with_shared_schemas,
};
use serde_json::{Value, json};

pub fn document() -> Value {
    with_shared_schemas(own_document())
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn own_document() -> Value {
    let payment = schema("Payment");
    let page = schema("PaymentPage");
    let bearer = json!([{ "bearer": [] }]);
    let id = param(
        "id",
        "path",
        "payment id (UUID)",
        json!({ "type": "string", "format": "uuid" }),
    );
    let key = json!({
        "name": "Idempotency-Key", "in": "header", "required": false,
        "description": "a repeat with the same key gets the first answer (with `Idempotent-Replayed: true`); the same key with another request is refused",
        "schema": { "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$" }
    });
    let reference = json!({ "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" });
    let [page_number, per_page] = page_params();
    let paging = [
        page_number,
        per_page,
        param(
            "status",
            "query",
            "only payments in this state (empty: any)",
            json!({ "type": "string", "enum": ["", "pending", "authorized", "captured", "partially_refunded", "refunded", "failed", "cancelled"] }),
        ),
    ];
    let step = |operation: &str, summary: &str, conflict: &str| {
        json!({
            "operationId": operation, "tags": ["payment"], "summary": summary, "security": bearer,
            "parameters": [id, key],
            "responses": {
                "200": ok("the payment after the step", payment.clone()), "400": problem("a bad id or Idempotency-Key"),
                "401": problem("no valid token"), "404": problem("no such payment, or another user's (the two answer alike)"),
                "409": problem(conflict), "422": problem("the Idempotency-Key was used for another request"),
                "503": problem("the card processor or the idempotency store is unavailable")
            }
        })
    };
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Emporium payment", "version": "1" },
        "paths": {
            "/api/v1/payments": {
                "post": {
                    "operationId": "createPayment", "tags": ["payment"], "summary": "A pending payment for an order (admin): the payer is the user named, else the caller. A customer's payments are made by the checkout (`POST /orders`)", "security": bearer,
                    "parameters": [key],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": schema("PaymentInput") } } },
                    "responses": with_body_problems(json!({
                        "201": ok("the pending payment", payment.clone()), "400": problem("a bad Idempotency-Key or body"),
                        "401": problem("no valid token"), "403": problem("not an admin"),
                        "409": problem("the first request with this Idempotency-Key is still running"),
                        "422": problem("a field breaks a rule, or the Idempotency-Key was used for another request"),
                        "503": problem("the idempotency store is unavailable")
                    }))
                },
                "get": {
                    "operationId": "listPayments", "tags": ["payment"], "summary": "Every payment, newest first (admin)", "security": bearer,
                    "parameters": paging.clone(),
                    "responses": { "200": ok("a page of payments", page.clone()), "400": problem("a bad parameter"), "401": problem("no valid token"), "403": problem("not an admin") }
                }
            },
            "/api/v1/payments/provider": {
                "get": {
                    "operationId": "getMockProcessor", "tags": ["payment"], "summary": "How the mock card processor behaves (admin)", "security": bearer,
                    "responses": { "200": ok("its behaviour", schema("MockBehaviour")), "401": problem("no valid token"), "403": problem("not an admin"), "404": problem("the processor is not the mock") }
                },
                "put": {
                    "operationId": "setMockProcessor", "tags": ["payment"], "summary": "Change the mock processor's failure rate and latency (admin)", "security": bearer,
                    "requestBody": { "required": true, "content": { "application/json": { "schema": schema("MockBehaviourInput") } } },
                    "responses": with_body_problems(json!({ "200": ok("its behaviour now", schema("MockBehaviour")), "401": problem("no valid token"), "403": problem("not an admin"), "404": problem("the processor is not the mock") }))
                }
            },
            "/api/v1/payments/order/{order_id}": {
                "get": {
                    "operationId": "listOrderPayments", "tags": ["payment"], "summary": "The payments of an order (the caller's; every one for an admin)", "security": bearer,
                    "parameters": [param("order_id", "path", "the order", reference.clone()), paging[0].clone(), paging[1].clone(), paging[2].clone()],
                    "responses": { "200": ok("a page of payments", page.clone()), "400": problem("a bad parameter"), "401": problem("no valid token") }
                }
            },
            "/api/v1/payments/{id}": {
                "get": {
                    "operationId": "getPayment", "tags": ["payment"], "summary": "A payment (its payer or an admin)", "security": bearer,
                    "parameters": [id],
                    "responses": { "200": ok("the payment", payment.clone()), "400": problem("a bad id"), "401": problem("no valid token"), "404": problem("no such payment, or another user's (the two answer alike)") }
                }
            },
            "/api/v1/payments/{id}/process": {
                "post": step("processPayment", "Authorize and capture a pending payment; a declined card or a processor failure leaves it `failed` with the reason", "the payment is not pending, or it expired")
            },
            "/api/v1/payments/{id}/cancel": {
                "post": step("cancelPayment", "Cancel a payment that was not captured (an authorization is voided)", "the payment was captured, failed or cancelled already")
            },
            "/api/v1/payments/{id}/refund": {
                "post": {
                    "operationId": "refundPayment", "tags": ["payment"], "summary": "Refund all that is left of a capture, or part of it (admin)", "security": bearer,
                    "parameters": [id, key],
                    "requestBody": { "required": false, "content": { "application/json": { "schema": schema("RefundInput") } } },
                    "responses": with_body_problems(json!({
                        "200": ok("the payment after the refund", payment.clone()), "400": problem("a bad id, key or body"),
                        "401": problem("no valid token"), "403": problem("not an admin"), "404": problem("no such payment"),
                        "409": problem("the payment is not captured"), "422": problem("more than is left, another currency, or a reused key"),
                        "503": problem("the card processor is unavailable")
                    }))
                }
            },
            "/api/v1/users/{id}/payments": {
                "get": {
                    "operationId": "listUserPayments", "tags": ["payment"], "summary": "A user's payments, newest first (the user or an admin)", "security": bearer,
                    "parameters": [param("id", "path", "the user", reference), paging[0].clone(), paging[1].clone(), paging[2].clone()],
                    "responses": { "200": ok("a page of payments", page), "400": problem("a bad parameter"), "401": problem("no valid token"), "403": problem("another user's payments") }
                }
            }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": {
                "PaymentInput": {
                    "type": "object", "required": ["order_id", "amount", "card_number"],
                    "properties": {
                        "order_id": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" },
                        "user_id": { "type": ["string", "null"], "pattern": "^[A-Za-z0-9_-]{1,64}$", "description": "the payer; the caller when absent" },
                        "amount": { "$ref": "#/components/schemas/Money" },
                        "method": { "type": ["string", "null"], "enum": ["card", null] },
                        "card_number": { "type": "string", "description": "12 to 19 digits passing the Luhn check; only the last four are kept. Mock test cards: 4000000000000002 declines, 4000000000009995 has no funds, 4000000000000119 fails, 4000000000000101 hangs" },
                        "metadata": { "type": ["object", "null"], "description": "at most 20 keys and 2048 bytes" }
                    }
                },
                "RefundInput": {
                    "type": "object", "additionalProperties": false,
                    "properties": { "amount": { "$ref": "#/components/schemas/Money" } }
                },
                "MockBehaviour": {
                    "type": "object", "required": ["failure_rate", "latency_ms"],
                    "properties": { "failure_rate": { "type": "number" }, "latency_ms": { "type": "integer" } }
                },
                "MockBehaviourInput": {
                    "type": "object",
                    "properties": {
                        "failure_rate": { "type": ["number", "null"], "minimum": 0, "maximum": 1 },
                        "latency_ms": { "type": ["integer", "null"], "minimum": 0, "maximum": 10000 }
                    }
                },
                "Payment": {
                    "type": "object",
                    "required": ["id", "order_id", "user_id", "amount", "refunded", "status", "method", "provider", "card_last4", "expires_at", "created_at", "updated_at"],
                    "properties": {
                        "id": { "type": "string", "format": "uuid" }, "order_id": { "type": "string" }, "user_id": { "type": "string" },
                        "amount": { "$ref": "#/components/schemas/Money" }, "refunded": { "$ref": "#/components/schemas/Money" },
                        "status": { "type": "string", "enum": ["pending", "authorized", "captured", "partially_refunded", "refunded", "failed", "cancelled"] },
                        "method": { "type": "string" }, "provider": { "type": "string" }, "provider_id": { "type": ["string", "null"] },
                        "card_last4": { "type": "string" }, "metadata": {}, "failure_reason": { "type": ["string", "null"] },
                        "processed_at": { "type": ["string", "null"], "format": "date-time" },
                        "expires_at": { "type": "string", "format": "date-time" },
                        "created_at": { "type": "string", "format": "date-time" }, "updated_at": { "type": "string", "format": "date-time" }
                    }
                },
                "PaymentPage": {
                    "type": "object", "required": ["items", "page", "per_page", "total"],
                    "properties": {
                        "items": { "type": "array", "items": { "$ref": "#/components/schemas/Payment" } },
                        "page": { "type": "integer" }, "per_page": { "type": "integer" }, "total": { "type": "integer" }
                    }
                }
            }
        }
    })
}
