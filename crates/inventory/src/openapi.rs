//! The OpenAPI 3.1 description of inventory's public routes; the gateway
//! merges it into the one document it serves.

use emporium_platform::openapi::{
    ok, page_params, param, problem, with_body_problems, with_shared_schemas,
};
use serde_json::{Value, json};

pub fn document() -> Value {
    with_shared_schemas(own_document())
}

fn body(schema: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn own_document() -> Value {
    let sku_schema = json!({ "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" });
    let warehouse_schema = json!({ "type": "string", "pattern": "^[a-z0-9-]{1,32}$" });
    let sku = param("sku", "path", "stock-keeping unit", sku_schema.clone());
    let warehouse = param(
        "warehouse",
        "query",
        "only this warehouse (empty: every one)",
        json!({ "type": "string", "pattern": "^([a-z0-9-]{1,32})?$" }),
    );
    let [page, per_page] = page_params();
    let bearer = json!([{ "bearer": [] }]);
    let count = json!({ "type": "integer" });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Emporium inventory", "version": "1" },
        "paths": {
            "/api/v1/inventory": {
                "get": {
                    "operationId": "listStock", "tags": ["inventory"], "summary": "Stock rows by SKU and warehouse (admin)", "security": bearer,
                    "parameters": [
                        param("sku", "query", "only this SKU (empty: every one)", json!({ "type": "string", "pattern": "^([A-Za-z0-9._-]{1,64})?$" })), warehouse.clone(),
                        param("low", "query", "only rows below their threshold", json!({ "type": "string", "enum": ["true", "false", ""] })),
                        page.clone(), per_page.clone()
                    ],
                    "responses": {
                        "200": ok("a page of stock rows", schema("StockPage")), "400": problem("a bad parameter"),
                        "401": problem("no valid token"), "403": problem("not an admin")
                    }
                }
            },
            "/api/v1/inventory/alerts": {
                "get": {
                    "operationId": "listLowStock", "tags": ["inventory"], "summary": "Rows whose available units are below their threshold (admin)", "security": bearer,
                    "parameters": [warehouse.clone(), page.clone(), per_page.clone()],
                    "responses": {
                        "200": ok("a page of stock rows", schema("StockPage")), "400": problem("a bad parameter"),
                        "401": problem("no valid token"), "403": problem("not an admin")
                    }
                }
            },
            "/api/v1/inventory/{sku}": {
                "get": {
                    "operationId": "getStock", "tags": ["inventory"], "summary": "A SKU's stock in each warehouse and in all",
                    "parameters": [sku.clone()],
                    "responses": {
                        "200": ok("the SKU's stock", schema("SkuStock")), "400": problem("a bad SKU"),
                        "404": problem("no stock is kept for this SKU")
                    }
                }
            },
            "/api/v1/inventory/{sku}/movements": {
                "get": {
                    "operationId": "listMovements", "tags": ["inventory"], "summary": "A SKU's ledger, newest first (admin)", "security": bearer,
                    "parameters": [sku, warehouse, page, per_page],
                    "responses": {
                        "200": ok("a page of movements", schema("MovementPage")), "400": problem("a bad parameter"),
                        "401": problem("no valid token"), "403": problem("not an admin"), "404": problem("no stock is kept for this SKU")
                    }
                }
            },
            "/api/v1/inventory/adjust": {
                "post": {
                    "operationId": "adjustStock", "tags": ["inventory"], "summary": "Add or remove units on hand, with a reason (admin)", "security": bearer,
                    "requestBody": body("Adjustment"),
                    "responses": with_body_problems(json!({
                        "200": ok("the row after the change", schema("StockLevel")),
                        "401": problem("no valid token"), "403": problem("not an admin"),
                        "404": problem("units removed from a row that does not exist"),
                        "409": problem("fewer units would be on hand than are reserved")
                    }))
                }
            },
            "/api/v1/inventory/reserve": {
                "post": {
                    "operationId": "reserveStock", "tags": ["inventory"],
                    "summary": "Hold every line or none until the reservation expires (admin; checkout reserves over gRPC)", "security": bearer,
                    "requestBody": body("ReserveInput"),
                    "responses": with_body_problems(json!({
                        "201": ok("the reservation (the first one again when its id was used for the same lines)", schema("Reservation")),
                        "401": problem("no valid token"), "403": problem("not an admin"),
                        "404": problem("no stock is kept for a SKU"),
                        "409": problem("not enough stock for a line, or the id was used for other lines")
                    }))
                }
            },
            "/api/v1/inventory/release": {
                "post": {
                    "operationId": "releaseStock", "tags": ["inventory"], "summary": "Let a reservation go (admin); repeating it is harmless", "security": bearer,
                    "requestBody": body("ReleaseInput"),
                    "responses": with_body_problems(json!({
                        "200": ok("the reservation", schema("Reservation")),
                        "401": problem("no valid token"), "403": problem("not an admin"),
                        "404": problem("no reservation has this id"), "409": problem("the reservation was committed")
                    }))
                }
            }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": {
                "StockLevel": {
                    "type": "object",
                    "required": ["sku", "warehouse", "on_hand", "reserved", "available", "threshold", "low", "updated_at"],
                    "properties": {
                        "sku": { "type": "string" }, "warehouse": { "type": "string" },
                        "on_hand": count.clone(), "reserved": count.clone(),
                        "available": { "type": "integer", "description": "on_hand - reserved" },
                        "threshold": { "type": "integer", "description": "below this many available units the row is low" },
                        "low": { "type": "boolean" }, "updated_at": { "type": "string", "format": "date-time" }
                    }
                },
                "StockPage": {
                    "type": "object", "required": ["items", "page", "per_page", "total"],
                    "properties": {
                        "items": { "type": "array", "items": schema("StockLevel") },
                        "page": count.clone(), "per_page": count.clone(), "total": count.clone()
                    }
                },
                "SkuStock": {
                    "type": "object", "required": ["sku", "on_hand", "reserved", "available", "warehouses"],
                    "properties": {
                        "sku": { "type": "string" }, "on_hand": count.clone(), "reserved": count.clone(), "available": count.clone(),
                        "warehouses": { "type": "array", "items": schema("StockLevel") }
                    }
                },
                "Movement": {
                    "type": "object",
                    "required": ["id", "sku", "warehouse", "kind", "on_hand_delta", "reserved_delta", "on_hand_after", "reserved_after", "actor", "reason", "created_at"],
                    "properties": {
                        "id": { "type": "string" }, "sku": { "type": "string" }, "warehouse": { "type": "string" },
                        "kind": { "type": "string", "enum": ["adjust", "reserve", "release", "expire", "commit", "restock"] },
                        "on_hand_delta": count.clone(), "reserved_delta": count.clone(),
                        "on_hand_after": count.clone(), "reserved_after": count.clone(),
                        "reservation_id": { "type": ["string", "null"] },
                        "actor": { "type": "string", "description": "the user id, or the system part that acted" },
                        "reason": { "type": "string" }, "created_at": { "type": "string", "format": "date-time" }
                    }
                },
                "MovementPage": {
                    "type": "object", "required": ["items", "page", "per_page", "total"],
                    "properties": {
                        "items": { "type": "array", "items": schema("Movement") },
                        "page": count.clone(), "per_page": count.clone(), "total": count.clone()
                    }
                },
                "Adjustment": {
                    "type": "object", "required": ["sku", "warehouse", "delta", "reason"],
                    "properties": {
                        "sku": sku_schema.clone(), "warehouse": warehouse_schema,
                        "delta": { "type": "integer", "minimum": -1_000_000_000, "maximum": 1_000_000_000, "not": { "const": 0 }, "description": "units added (positive) or removed (negative)" },
                        "reason": { "type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S" },
                        "threshold": { "type": ["integer", "null"], "minimum": 0, "maximum": 1_000_000_000, "description": "a new low-stock threshold for the row" }
                    }
                },
                "ReserveInput": {
                    "type": "object", "required": ["lines"],
                    "properties": {
                        "reservation_id": { "type": ["string", "null"], "format": "uuid", "description": "makes the call idempotent; made up when absent" },
                        "lines": {
                            "type": "array", "minItems": 1, "maxItems": 100,
                            "items": {
                                "type": "object", "required": ["sku", "quantity"],
                                "properties": { "sku": sku_schema, "quantity": { "type": "integer", "minimum": 1, "maximum": 1_000_000_000 } }
                            }
                        },
                        "ttl_secs": { "type": ["integer", "null"], "minimum": 1, "maximum": 86_400, "description": "seconds until it expires; the service's default when absent" },
                        "reference": { "type": ["string", "null"], "maxLength": 100, "description": "what the stock is held for, such as an order id" }
                    }
                },
                "ReleaseInput": {
                    "type": "object", "required": ["reservation_id"],
                    "properties": { "reservation_id": { "type": "string", "format": "uuid" } }
                },
                "Reservation": {
                    "type": "object", "required": ["id", "status", "reference", "allocations", "expires_at", "created_at"],
                    "properties": {
                        "id": { "type": "string", "format": "uuid" },
                        "status": { "type": "string", "enum": ["active", "committed", "released", "expired", "restocked"] },
                        "reference": { "type": "string" },
                        "allocations": {
                            "type": "array", "description": "where the units are held: the warehouse with the most available units takes a whole line when it can, else the most available ones first",
                            "items": {
                                "type": "object", "required": ["sku", "warehouse", "quantity"],
                                "properties": { "sku": { "type": "string" }, "warehouse": { "type": "string" }, "quantity": count }
                            }
                        },
                        "expires_at": { "type": "string", "format": "date-time" }, "created_at": { "type": "string", "format": "date-time" }
                    }
                }
            }
        }
    })
}
