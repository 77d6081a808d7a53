//! The catalog's store contract, run on SQLite always and on PostgreSQL and
//! MariaDB when their URLs are set; and its events through the outbox on
//! both transports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use emporium_catalog::domain::{CategoryInput, ProductDraft, ProductId, ProductInput, Sort};
use emporium_catalog::products::{Catalog, CatalogError};
use emporium_catalog::store::ListQuery;
use emporium_platform::bus::{self, Envelope, Handler, InProcess, Outbox, RabbitMq, Transport};
use emporium_platform::cache::MemoryCache;
use emporium_platform::money::MoneyJson;
use emporium_testkit::{Backend, Link, TestDatabase, eventually, server_url};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

struct Fixture {
    catalog: Catalog,
    db: DatabaseConnection,
    _guard: TestDatabase,
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    let guard = TestDatabase::fresh(backend).await?;
    let db = emporium_platform::db::connect(&guard.url)
        .await
        .expect("connect");
    emporium_platform::db::migrate::<emporium_catalog::migrations::Migrator>(&db)
        .await
        .expect("migrate");
    let catalog = Catalog::new(
        db.clone(),
        Arc::new(MemoryCache::new(1000)),
        Arc::new(object_store::memory::InMemory::new()),
        Outbox::new(),
        Duration::from_secs(60),
        64 * 1024,
    );
    for (slug, name) in [("kitchen", "Kitchen"), ("books", "Books")] {
        catalog
            .create_category(&CategoryInput {
                slug: slug.into(),
                name: name.into(),
            })
            .await
            .unwrap();
    }
    Some(Fixture {
        catalog,
        db,
        _guard: guard,
    })
}

fn draft(sku: &str, name: &str, description: &str, price: &str, category: &str) -> ProductDraft {
    ProductDraft::parse(&ProductInput {
        sku: sku.into(),
        name: name.into(),
        description: description.into(),
        price: MoneyJson {
            amount: price.into(),
            currency: "USD".into(),
        },
        category: category.into(),
    })
    .expect("valid draft")
}

fn query() -> ListQuery {
    ListQuery {
        category: None,
        q: None,
        min_price: None,
        max_price: None,
        currency: None,
        sort: Sort::NameAsc,
        page: 1,
        per_page: 50,
    }
}

async fn names(catalog: &Catalog, query: ListQuery) -> (Vec<String>, u64) {
    let page = catalog.list(&query).await.unwrap();
    (page.items.into_iter().map(|p| p.name).collect(), page.total)
}

async fn outbox_count(db: &DatabaseConnection, kind: &str) -> i64 {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM outbox WHERE event_type = '{kind}'"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

async fn seed(catalog: &Catalog) {
    for (sku, name, description, price, category) in [
        (
            "K-1",
            "Enamel Coffee Mug",
            "Keeps coffee hot",
            "14.00",
            "kitchen",
        ),
        (
            "K-2",
            "Cast Iron Skillet",
            "Sears steak and bakes bread",
            "39.50",
            "kitchen",
        ),
        (
            "K-3",
            "Pour Over Dripper",
            "Ceramic coffee dripper",
            "24.00",
            "kitchen",
        ),
        (
            "B-1",
            "Microservice Patterns",
            "Sagas and outboxes",
            "42.00",
            "books",
        ),
        (
            "B-2",
            "Coffee Atlas",
            "Origins of beans around the world",
            "30.00",
            "books",
        ),
    ] {
        catalog
            .create(&draft(sku, name, description, price, category))
            .await
            .unwrap();
    }
}

async fn contract_create_get_and_conflicts(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let created = f
        .catalog
        .create(&draft("mug-1", "Mug", "A mug", "19.99", "kitchen"))
        .await
        .unwrap();
    assert_eq!(created.sku.as_str(), "MUG-1");
    assert_eq!(
        created.price.to_json(),
        MoneyJson {
            amount: "19.99".into(),
            currency: "USD".into()
        }
    );
    let fetched = f.catalog.get(created.id).await.unwrap();
    assert_eq!(fetched, created);
    assert!(matches!(
        f.catalog
            .create(&draft("MUG-1", "Other", "", "1.00", "kitchen"))
            .await,
        Err(CatalogError::DuplicateSku(_))
    ));
    assert!(matches!(
        f.catalog
            .create(&draft("MUG-2", "Other", "", "1.00", "garden"))
            .await,
        Err(CatalogError::Invalid(_))
    ));
    assert!(matches!(
        f.catalog
            .create_category(&CategoryInput {
                slug: "kitchen".into(),
                name: "Again".into()
            })
            .await,
        Err(CatalogError::DuplicateCategory(_))
    ));
    assert!(matches!(
        f.catalog.get(ProductId::new()).await,
        Err(CatalogError::NotFound)
    ));
    assert_eq!(
        outbox_count(&f.db, "product.created").await,
        1,
        "failed writes leave no event"
    );
    let categories = f.catalog.categories().await.unwrap();
    let kitchen = categories.iter().find(|c| c.slug == "kitchen").unwrap();
    assert_eq!(kitchen.product_count, 1);
}

async fn contract_filters_sorts_and_pages(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    seed(&f.catalog).await;
    let (all, total) = names(&f.catalog, query()).await;
    assert_eq!(total, 5);
    assert_eq!(
        all,
        [
            "Cast Iron Skillet",
            "Coffee Atlas",
            "Enamel Coffee Mug",
            "Microservice Patterns",
            "Pour Over Dripper"
        ]
    );
    let (books, total) = names(
        &f.catalog,
        ListQuery {
            category: Some("books".into()),
            ..query()
        },
    )
    .await;
    assert_eq!((books.len(), total), (2, 2));
    let (cheap, _) = names(
        &f.catalog,
        ListQuery {
            min_price: Some(2000),
            max_price: Some(3000),
            currency: Some("USD".into()),
            ..query()
        },
    )
    .await;
    assert_eq!(cheap, ["Coffee Atlas", "Pour Over Dripper"]);
    let (by_price, _) = names(
        &f.catalog,
        ListQuery {
            sort: Sort::PriceDesc,
            ..query()
        },
    )
    .await;
    assert_eq!(by_price[0], "Microservice Patterns");
    assert_eq!(by_price[4], "Enamel Coffee Mug");
    let (page2, total) = names(
        &f.catalog,
        ListQuery {
            per_page: 2,
            page: 2,
            ..query()
        },
    )
    .await;
    assert_eq!(
        (page2, total),
        (
            vec![
                "Enamel Coffee Mug".to_owned(),
                "Microservice Patterns".to_owned()
            ],
            5
        )
    );
    let (past_end, total) = names(
        &f.catalog,
        ListQuery {
            per_page: 2,
            page: 9,
            ..query()
        },
    )
    .await;
    assert_eq!((past_end.len(), total), (0, 5));
    let (newest, _) = names(
        &f.catalog,
        ListQuery {
            sort: Sort::Newest,
            ..query()
        },
    )
    .await;
    assert_eq!(newest[0], "Coffee Atlas", "the last created comes first");
}

async fn contract_full_text_search(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    seed(&f.catalog).await;
    let search = |q: &str| ListQuery {
        q: Some(q.into()),
        ..query()
    };
    assert_eq!(
        names(&f.catalog, search("coffee")).await.0,
        ["Coffee Atlas", "Enamel Coffee Mug", "Pour Over Dripper"]
    );
    assert_eq!(
        names(&f.catalog, search("COFFEE mug")).await.0,
        ["Enamel Coffee Mug"],
        "every word must match, any case"
    );
    assert_eq!(
        names(&f.catalog, search("skil")).await.0,
        ["Cast Iron Skillet"],
        "words match by prefix"
    );
    assert_eq!(
        names(&f.catalog, search("outboxes")).await.0,
        ["Microservice Patterns"],
        "descriptions are searched"
    );
    assert_eq!(names(&f.catalog, search("origins")).await.1, 1);
    assert_eq!(names(&f.catalog, search("teapot")).await.1, 0);
    assert_eq!(
        names(&f.catalog, search("ir")).await.0,
        ["Cast Iron Skillet"],
        "short words match too"
    );
    assert_eq!(
        names(&f.catalog, search("cast ir")).await.0,
        ["Cast Iron Skillet"]
    );
    assert_eq!(
        names(&f.catalog, search("ro")).await.1,
        0,
        "a short word matches at word starts only"
    );
    for hostile in [
        "'; DROP TABLE products; --",
        "\" OR 1=1 --",
        "<script>alert(1)</script>",
        "*",
        "NEAR(",
        "a AND OR NOT",
        "%_%",
    ] {
        let page = f.catalog.list(&search(hostile)).await;
        assert!(page.is_ok(), "{hostile:?} must not break search: {page:?}");
    }
    assert_eq!(names(&f.catalog, query()).await.1, 5, "nothing was dropped");
    let (kitchen_coffee, _) = names(
        &f.catalog,
        ListQuery {
            category: Some("kitchen".into()),
            ..search("coffee")
        },
    )
    .await;
    assert_eq!(kitchen_coffee, ["Enamel Coffee Mug", "Pour Over Dripper"]);

    // The index follows updates and deletes.
    let mug = f
        .catalog
        .list(&search("enamel"))
        .await
        .unwrap()
        .items
        .remove(0);
    f.catalog
        .update(
            mug.id,
            &draft(
                "K-1",
                "Stoneware Tumbler",
                "Keeps tea warm",
                "14.00",
                "kitchen",
            ),
        )
        .await
        .unwrap();
    assert_eq!(names(&f.catalog, search("enamel")).await.1, 0);
    assert_eq!(
        names(&f.catalog, search("tumbler")).await.0,
        ["Stoneware Tumbler"]
    );
    f.catalog.delete(mug.id).await.unwrap();
    assert_eq!(names(&f.catalog, search("tumbler")).await.1, 0);
}

async fn contract_update_delete_and_cache(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let created = f
        .catalog
        .create(&draft("P-1", "Lamp", "", "10.00", "kitchen"))
        .await
        .unwrap();
    let cached = f.catalog.get(created.id).await.unwrap();
    assert_eq!(cached.name, "Lamp");
    let updated = f
        .catalog
        .update(
            created.id,
            &draft("P-1", "Brass Lamp", "Warm light", "12.50", "books"),
        )
        .await
        .unwrap();
    assert_eq!(updated.price.amount(), "12.50");
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(
        f.catalog.get(created.id).await.unwrap().name,
        "Brass Lamp",
        "the write invalidated the cached copy"
    );
    let other = f
        .catalog
        .create(&draft("P-2", "Rug", "", "80.00", "kitchen"))
        .await
        .unwrap();
    assert!(matches!(
        f.catalog
            .update(other.id, &draft("P-1", "Rug", "", "80.00", "kitchen"))
            .await,
        Err(CatalogError::DuplicateSku(_))
    ));
    assert_eq!(
        f.catalog.get(other.id).await.unwrap().sku.as_str(),
        "P-2",
        "a refused update changes nothing"
    );
    let missing = ProductId::new();
    assert!(matches!(
        f.catalog
            .update(missing, &draft("P-9", "X", "", "1.00", "kitchen"))
            .await,
        Err(CatalogError::NotFound)
    ));
    f.catalog.delete(created.id).await.unwrap();
    assert!(
        matches!(f.catalog.get(created.id).await, Err(CatalogError::NotFound)),
        "the delete invalidated the cache"
    );
    assert!(matches!(
        f.catalog.delete(created.id).await,
        Err(CatalogError::NotFound)
    ));
    assert_eq!(outbox_count(&f.db, "product.created").await, 2);
    assert_eq!(outbox_count(&f.db, "product.updated").await, 1);
    assert_eq!(outbox_count(&f.db, "product.deleted").await, 1);
}

async fn contract_images(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let product = f
        .catalog
        .create(&draft("IMG-1", "Poster", "", "5.00", "books"))
        .await
        .unwrap();
    let png = emporium_catalog::seed::picture(1);
    let with_image = f.catalog.add_image(product.id, png.clone()).await.unwrap();
    assert_eq!(with_image.images.len(), 1);
    let (bytes, mime) = f
        .catalog
        .image(product.id, &with_image.images[0])
        .await
        .unwrap();
    assert_eq!((bytes, mime), (png.clone(), "image/png"));
    assert!(matches!(
        f.catalog.add_image(product.id, "<svg/>".into()).await,
        Err(CatalogError::UnsupportedImage)
    ));
    assert!(matches!(
        f.catalog
            .add_image(product.id, vec![0x89; 65 * 1024].into())
            .await,
        Err(CatalogError::ImageTooLarge(_))
    ));
    let missing = ProductId::new();
    assert!(matches!(
        f.catalog.add_image(missing, png).await,
        Err(CatalogError::NotFound)
    ));
    assert!(matches!(
        f.catalog.image(product.id, "../../secret.png").await,
        Err(CatalogError::ImageNotFound)
    ));
    assert_eq!(
        f.catalog.get(product.id).await.unwrap().images.len(),
        1,
        "refused uploads add nothing"
    );
}

/// Concurrent writers: one SKU is taken once; every update lands with its event.
async fn contract_concurrent_writes(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let attempts = (0..12).map(|i| {
        let catalog = f.catalog.clone();
        async move {
            catalog
                .create(&draft(
                    "SAME-SKU",
                    &format!("Racer {i}"),
                    "",
                    "1.00",
                    "kitchen",
                ))
                .await
        }
    });
    let outcomes = futures::future::join_all(attempts).await;
    let created = outcomes.iter().filter(|o| o.is_ok()).count();
    let conflicts = outcomes
        .iter()
        .filter(|o| matches!(o, Err(CatalogError::DuplicateSku(_))))
        .count();
    assert_eq!((created, conflicts), (1, 11), "{outcomes:?}");
    let product = outcomes.into_iter().find_map(Result::ok).unwrap();
    let updates = (0..10).map(|i| {
        let catalog = f.catalog.clone();
        let id = product.id;
        async move {
            catalog
                .update(
                    id,
                    &draft("SAME-SKU", &format!("Version {i}"), "", "2.00", "kitchen"),
                )
                .await
        }
    });
    for outcome in futures::future::join_all(updates).await {
        outcome.unwrap();
    }
    assert_eq!(
        outbox_count(&f.db, "product.updated").await,
        10,
        "one event per update"
    );
    assert_eq!(outbox_count(&f.db, "product.created").await, 1);
    assert!(
        f.catalog
            .get(product.id)
            .await
            .unwrap()
            .name
            .starts_with("Version ")
    );
}

/// Text in any script round-trips and is searchable.
async fn contract_unicode_text(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let name = "Crème brûlée Tasse 🍮 抹茶";
    let description = "Für Café-Liebhaber: ☕ handgemacht — ½ Liter\nzweite Zeile";
    let created = f
        .catalog
        .create(&draft("UNI-1", name, description, "12.00", "kitchen"))
        .await
        .unwrap();
    let fetched = f.catalog.get(created.id).await.unwrap();
    assert_eq!(
        (fetched.name.as_str(), fetched.description.as_str()),
        (name, description)
    );
    let search = |q: &str| ListQuery {
        q: Some(q.into()),
        ..query()
    };
    assert_eq!(names(&f.catalog, search("crème")).await.0, [name]);
    assert_eq!(names(&f.catalog, search("café liebhaber")).await.0, [name]);
}

/// A stored value that no longer parses is an error the client sees as a
/// problem, never a silent default (an empty image list, a zero price).
async fn contract_corrupt_rows_are_errors(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let product = f
        .catalog
        .create(&draft("BAD-1", "Lamp", "", "5.00", "kitchen"))
        .await
        .unwrap();
    f.db.execute_unprepared(&format!(
        "UPDATE products SET images = 'not json' WHERE id = '{}'",
        product.id
    ))
    .await
    .unwrap();
    let err = f.catalog.get(product.id).await.unwrap_err();
    assert!(matches!(err, CatalogError::Corrupt { .. }), "{err:?}");
    let problem = emporium_platform::Problem::from(err);
    assert_eq!(problem.code.http_status().as_u16(), 500);
    assert!(
        !problem.detail.contains("not json"),
        "internals stay in the log"
    );
    assert!(matches!(
        f.catalog.list(&query()).await,
        Err(CatalogError::Corrupt { .. })
    ));
    f.db.execute_unprepared(&format!(
        "UPDATE products SET images = '[]', currency = 'XXX' WHERE id = '{}'",
        product.id
    ))
    .await
    .unwrap();
    assert!(matches!(
        f.catalog.get(product.id).await,
        Err(CatalogError::Corrupt { .. })
    ));
}

emporium_testkit::on_every_backend!(
    contract_corrupt_rows_are_errors,
    contract_create_get_and_conflicts,
    contract_filters_sorts_and_pages,
    contract_full_text_search,
    contract_update_delete_and_cache,
    contract_images,
    contract_concurrent_writes,
    contract_unicode_text,
);

#[derive(Default)]
struct Collect(Mutex<Vec<Envelope>>);

#[async_trait]
impl Handler for Collect {
    async fn handle(&self, envelope: &Envelope) -> anyhow::Result<()> {
        self.0.lock().await.push(envelope.clone());
        Ok(())
    }
}

/// Each write's event reaches a subscriber exactly once.
async fn events_go_out_once(transport: Arc<dyn Transport>, queue: &str) {
    let f = fixture(Backend::Sqlite).await.unwrap();
    let shutdown = CancellationToken::new();
    let collect = Arc::new(Collect::default());
    let task = transport
        .subscribe(
            queue,
            &[bus::Interest::new("product.*", "emporium.catalog")],
            collect.clone(),
            shutdown.clone(),
        )
        .await
        .unwrap();
    let task = tokio::spawn(task);
    let product = f
        .catalog
        .create(&draft("EV-1", "Event Mug", "", "3.00", "kitchen"))
        .await
        .unwrap();
    f.catalog
        .update(
            product.id,
            &draft("EV-1", "Event Mug II", "", "3.00", "kitchen"),
        )
        .await
        .unwrap();
    f.catalog.delete(product.id).await.unwrap();
    assert_eq!(
        bus::relay_pending(&f.db, transport.as_ref()).await.unwrap(),
        3
    );
    assert_eq!(
        bus::relay_pending(&f.db, transport.as_ref()).await.unwrap(),
        0,
        "sent rows are not sent again"
    );
    let ours = |events: &[Envelope]| {
        events
            .iter()
            .filter(|e| e.subject == format!("products/{}", product.id))
            .cloned()
            .collect::<Vec<_>>()
    };
    let seen = eventually(Duration::from_secs(10), || async {
        let events = ours(&collect.0.lock().await);
        (events.len() >= 3).then_some(events)
    })
    .await
    .expect("three events");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen_after = ours(&collect.0.lock().await);
    assert_eq!(seen_after.len(), 3, "exactly once each");
    let kinds: Vec<_> = seen.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["product.created", "product.updated", "product.deleted"],
        "in order"
    );
    assert_eq!(seen[0].data["name"], "Event Mug");
    assert_eq!(seen[0].source, "emporium.catalog");
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn product_events_go_out_once_in_process() {
    events_go_out_once(Arc::new(InProcess::new(3)), "test-catalog-events").await;
}

#[tokio::test]
async fn product_events_go_out_once_through_rabbitmq() {
    let Some(url) = server_url(emporium_testkit::AMQP) else {
        return;
    };
    let queue = format!("test-catalog-{}", uuid::Uuid::now_v7().simple());
    events_go_out_once(Arc::new(RabbitMq::new(&url, 16, 3)), &queue).await;
    emporium_testkit::delete_queues(&url, &queue).await;
}

/// With the broker unreachable a product write still succeeds; its event
/// goes out once the broker is back.
#[tokio::test]
async fn writes_succeed_while_rabbitmq_is_away() {
    let Some(url) = server_url(emporium_testkit::AMQP) else {
        return;
    };
    let f = fixture(Backend::Sqlite).await.unwrap();
    let parsed = url::Url::parse(&url).unwrap();
    let broker = format!("127.0.0.1:{}", parsed.port().unwrap_or(5672))
        .parse()
        .unwrap();
    let link = Link::to(broker).await;
    let mut via_link = parsed.clone();
    via_link.set_host(Some("127.0.0.1")).unwrap();
    via_link.set_port(Some(link.addr.port())).unwrap();
    let relay_transport = RabbitMq::new(via_link.as_str(), 16, 3);
    let direct: Arc<dyn Transport> = Arc::new(RabbitMq::new(&url, 16, 3));
    let queue = format!("test-outage-{}", uuid::Uuid::now_v7().simple());
    let shutdown = CancellationToken::new();
    let collect = Arc::new(Collect::default());
    let task = direct
        .subscribe(
            &queue,
            &[bus::Interest::new("product.created", "emporium.catalog")],
            collect.clone(),
            shutdown.clone(),
        )
        .await
        .unwrap();
    let task = tokio::spawn(task);

    link.cut();
    let product = f
        .catalog
        .create(&draft("OUT-1", "Outage Mug", "", "3.00", "kitchen"))
        .await
        .expect("the write succeeds");
    assert!(bus::relay_pending(&f.db, &relay_transport).await.is_err());
    assert_eq!(bus::pending_count(&f.db).await.unwrap(), 1);
    link.restore();
    assert_eq!(
        bus::relay_pending(&f.db, &relay_transport).await.unwrap(),
        1
    );
    let seen = eventually(Duration::from_secs(10), || async {
        let events = collect.0.lock().await;
        events
            .iter()
            .any(|e| e.subject.ends_with(&product.id.to_string()))
            .then(|| events.len())
    })
    .await;
    assert_eq!(seen, Some(1));
    shutdown.cancel();
    task.await.unwrap();
    emporium_testkit::delete_queues(&url, &queue).await;
}

/// Readers hammering a product while it is rewritten never leave an old copy
/// in the cache: once the writes stop, every read sees the last one.
async fn reads_are_fresh_after_concurrent_writes(cache: emporium_platform::cache::SharedCache) {
    let guard = TestDatabase::fresh(Backend::Sqlite).await.unwrap();
    let db = emporium_platform::db::connect(&guard.url).await.unwrap();
    emporium_platform::db::migrate::<emporium_catalog::migrations::Migrator>(&db)
        .await
        .unwrap();
    let catalog = Catalog::new(
        db,
        cache,
        Arc::new(object_store::memory::InMemory::new()),
        Outbox::new(),
        Duration::from_secs(300),
        1024,
    );
    catalog
        .create_category(&CategoryInput {
            slug: "kitchen".into(),
            name: "Kitchen".into(),
        })
        .await
        .unwrap();
    let sku = format!("FRESH-{}", uuid::Uuid::now_v7().simple());
    let product = catalog
        .create(&draft(&sku, "Version 0", "", "1.00", "kitchen"))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let readers: Vec<_> = (0..6)
        .map(|_| {
            let (catalog, id, stop) = (catalog.clone(), product.id, stop.clone());
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    catalog.get(id).await.unwrap();
                    // A cache hit in memory never waits: let the writer run.
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for version in 1..=30 {
        catalog
            .update(
                product.id,
                &draft(&sku, &format!("Version {version}"), "", "1.00", "kitchen"),
            )
            .await
            .unwrap();
    }
    stop.cancel();
    for reader in readers {
        reader.await.unwrap();
    }
    assert_eq!(catalog.get(product.id).await.unwrap().name, "Version 30");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_fresh_after_concurrent_writes_with_the_memory_cache() {
    reads_are_fresh_after_concurrent_writes(Arc::new(MemoryCache::new(1000))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_fresh_after_concurrent_writes_with_redis() {
    let Some(url) = server_url(emporium_testkit::REDIS) else {
        return;
    };
    let cache = emporium_platform::cache::from_url(
        &emporium_platform::config::Secret::new(url),
        "catalog-test",
    )
    .await
    .unwrap();
    reads_are_fresh_after_concurrent_writes(cache).await;
}

/// Example credentials: moto takes any, as a MinIO takes its own.
const S3_KEY: (&str, &str) = ("emporium-test", "example-secret-key");

/// The catalog as `emporium serve catalog` runs it, its images in `bucket`
/// on the S3 API at `endpoint`, trusting `tokens`.
async fn catalog_on_s3(
    endpoint: &str,
    bucket: &str,
    tokens: &emporium_testkit::Tokens,
    dir: &std::path::Path,
) -> emporium_platform::service::Running {
    use emporium_catalog::CatalogSettings;
    use emporium_platform::config::{Secret, Settings};
    let (key, secret) = S3_KEY;
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, tokens.issuer.jwks()).unwrap();
    let mut settings = Settings::ephemeral(dir);
    settings.auth.jwks_file = Some(jwks);
    settings.update_section::<CatalogSettings>(|c| {
        c.objects_url = Some(Secret::new(format!(
            "s3://{key}:{secret}@{bucket}?endpoint={endpoint}&region=us-east-1"
        )));
    });
    assert!(
        !settings.to_masked_toml().contains(secret),
        "the objects URL's secret key is printed"
    );
    emporium_testkit::spawn(settings, &[emporium_catalog::definition()]).await
}

/// A product to hang images on, made through the API; its id.
async fn poster(http: &reqwest::Client, base: &str, admin: &str) -> String {
    let status = http
        .post(format!("{base}/api/v1/categories"))
        .bearer_auth(admin)
        .json(&serde_json::json!({ "slug": "posters", "name": "Posters" }))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, reqwest::StatusCode::CREATED);
    let product: serde_json::Value = http
        .post(format!("{base}/api/v1/products"))
        .bearer_auth(admin)
        .json(&serde_json::json!({
            "sku": "S3-POSTER",
            "name": "Poster",
            "price": { "amount": "9.50", "currency": "USD" },
            "category": "posters",
        }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    product["id"].as_str().unwrap().to_owned()
}

/// The catalog with its images on an S3 API (moto's server in CI, MinIO
/// in the compose file): an image uploaded through the API is read back
/// byte for byte, lies in the bucket where an S3 client of the test's own
/// finds it, a refused upload stores nothing, and deleting the product
/// removes its images from the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_images_live_in_an_s3_bucket_and_leave_with_their_product() {
    use futures::TryStreamExt;
    use object_store::aws::AmazonS3Builder;
    use object_store::path::Path as ObjectPath;
    use object_store::{ObjectStore, ObjectStoreExt};
    use reqwest::StatusCode;

    let Some(endpoint) = server_url(emporium_testkit::S3) else {
        return;
    };
    let endpoint = endpoint.trim_end_matches('/').to_owned();
    let bucket = emporium_testkit::s3_bucket(&endpoint).await;
    let tokens = emporium_testkit::Tokens::new();
    let dir = tempfile::tempdir().unwrap();
    let running = catalog_on_s3(&endpoint, &bucket, &tokens, dir.path()).await;
    let base = running.url("catalog").unwrap();
    let http = reqwest::Client::new();
    let admin = tokens.admin();
    let ready: serde_json::Value = http
        .get(format!("{base}/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["objects"], "up", "{ready}");
    let id = poster(&http, &base, &admin).await;
    let png = emporium_catalog::seed::picture(7);
    let uploaded = http
        .post(format!("{base}/api/v1/products/{id}/images"))
        .bearer_auth(&admin)
        .header("content-type", "image/png")
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), StatusCode::CREATED);
    let uploaded: serde_json::Value = uploaded.json().await.unwrap();
    let image = &uploaded["images"][0];
    let (name, url) = (
        image["name"].as_str().unwrap().to_owned(),
        image["url"].as_str().unwrap().to_owned(),
    );
    let read = http.get(format!("{base}{url}")).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.headers()["content-type"], "image/png");
    assert_eq!(
        read.bytes().await.unwrap(),
        png,
        "the image reads back whole"
    );

    // The bucket, through an S3 client of the test's own.
    let (key, secret) = S3_KEY;
    let s3 = AmazonS3Builder::new()
        .with_bucket_name(&bucket)
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id(key)
        .with_secret_access_key(secret)
        .build()
        .unwrap();
    let in_bucket = || async {
        let mut listed: Vec<(String, u64)> = s3
            .list(None)
            .map_ok(|meta| (meta.location.to_string(), meta.size))
            .try_collect()
            .await
            .unwrap();
        listed.sort();
        listed
    };
    let object = format!("products/{id}/{name}");
    assert_eq!(in_bucket().await, [(object.clone(), png.len() as u64)]);
    let stored = s3
        .get(&ObjectPath::from(object.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(stored, png, "the bucket holds the bytes as uploaded");

    let refused = http
        .post(format!("{base}/api/v1/products/{id}/images"))
        .bearer_auth(&admin)
        .body("<svg/>")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(refused, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        in_bucket().await.len(),
        1,
        "a refused upload stores nothing"
    );

    let deleted = http
        .delete(format!("{base}/api/v1/products/{id}"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(deleted, StatusCode::NO_CONTENT);
    assert_eq!(
        in_bucket().await,
        [],
        "the deleted product's image is removed from the bucket"
    );
    let gone = http.get(format!("{base}{url}")).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    running.stop(Duration::from_secs(5)).await;
}

/// A bucket that does not exist (a name mistyped, a bucket never made):
/// the catalog starts and serves its products, its readiness says the
/// object store is down, and an upload fails without recording an image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_shows_in_readiness_and_uploads_record_nothing() {
    let Some(endpoint) = server_url(emporium_testkit::S3) else {
        return;
    };
    let endpoint = endpoint.trim_end_matches('/').to_owned();
    let bucket = format!("emporium-test-never-made-{}", uuid::Uuid::now_v7().simple());
    let tokens = emporium_testkit::Tokens::new();
    let dir = tempfile::tempdir().unwrap();
    let running = catalog_on_s3(&endpoint, &bucket, &tokens, dir.path()).await;
    let base = running.url("catalog").unwrap();
    let http = reqwest::Client::new();
    let admin = tokens.admin();
    let ready = http.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::OK, "degraded, not out");
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(
        (
            ready["status"].as_str(),
            ready["checks"]["objects"].as_str()
        ),
        (Some("degraded"), Some("down")),
        "{ready}"
    );
    let id = poster(&http, &base, &admin).await;
    let upload = http
        .post(format!("{base}/api/v1/products/{id}/images"))
        .bearer_auth(&admin)
        .body(emporium_catalog::seed::picture(3))
        .send()
        .await
        .unwrap()
        .status();
    assert!(upload.is_server_error(), "{upload}");
    let product: serde_json::Value = http
        .get(format!("{base}/api/v1/products/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(product["images"], serde_json::json!([]));
    running.stop(Duration::from_secs(5)).await;
}
