//! The OpenAPI 3.1 description of the basket's public routes; the gateway
//! merges it into the one document it serves.

use emporium_platform::openapi::{ok, param, problem, with_body_problems, with_shared_schemas};
use serde_json::{Value, json};

pub fn document() -> Value {
    with_shared_schemas(own_document())
}

fn body(schema: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

fn own_document() -> Value {
    let basket = json!({ "$ref": "#/components/schemas/Basket" });
    let user = param(
        "user_id",
        "path",
        "the basket's owner (the subject of their token)",
        json!({ "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" }),
    );
    let product = param(
        "product_id",
        "path",
        "a product id (UUID)",
        json!({ "type": "string", "format": "uuid" }),
    );
    let bearer = json!([{ "bearer": [] }]);
    let reach = |extra: Value| {
        let mut responses = json!({
            "400": problem("a bad user or product id"), "401": problem("no valid token"),
            "403": problem("another user's basket"),
            "503": problem("the basket store is unavailable")
        });
        if let (Some(map), Some(more)) = (responses.as_object_mut(), extra.as_object()) {
            map.extend(more.clone());
        }
        responses
    };
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Emporium basket", "version": "1" },
        "paths": {
            "/api/v1/baskets": {
                "post": {
                    "operationId": "createBasket", "tags": ["basket"], "summary": "Make the caller's empty basket (an admin may name the user)", "security": bearer,
                    "requestBody": body("BasketCreation"),
                    "responses": with_body_problems(reach(json!({
                        "201": ok("the new basket", basket.clone()), "200": ok("the basket existed already", basket.clone()),
                        "409": problem("the basket changed too often at once")
                    })))
                }
            },
            "/api/v1/baskets/{user_id}": {
                "get": {
                    "operationId": "getBasket", "tags": ["basket"],
                    "summary": "The basket, each line compared with the catalog now (as held, `unchecked`, when the catalog cannot answer)", "security": bearer,
                    "parameters": [user.clone()],
                    "responses": reach(json!({ "200": ok("the basket (empty when there is none)", basket.clone()) }))
                },
                "delete": {
                    "operationId": "deleteBasket", "tags": ["basket"], "summary": "Empty the basket (publishes basket.cleared)", "security": bearer,
                    "parameters": [user.clone()],
                    "responses": reach(json!({ "204": { "description": "the basket is empty" } }))
                }
            },
            "/api/v1/baskets/{user_id}/items": {
                "post": {
                    "operationId": "addBasketItem", "tags": ["basket"], "summary": "Add a product at the catalog's price now", "security": bearer,
                    "parameters": [user.clone()], "requestBody": body("ItemAddition"),
                    "responses": with_body_problems(reach(json!({
                        "200": ok("the basket", basket.clone()), "404": problem("no product has this id"),
                        "409": problem("the product is priced in another currency than the basket, or the basket changed too often at once"),
                        "422": problem("a quantity out of bounds, or too many products"),
                        "503": problem("the catalog or the basket store is unavailable")
                    })))
                },
                "delete": {
                    "operationId": "clearBasketItems", "tags": ["basket"], "summary": "Remove every line (publishes basket.cleared)", "security": bearer,
                    "parameters": [user.clone()],
                    "responses": reach(json!({ "204": { "description": "the basket is empty" } }))
                }
            },
            "/api/v1/baskets/{user_id}/items/{product_id}": {
                "put": {
                    "operationId": "setBasketItemQuantity", "tags": ["basket"], "summary": "Set a line's quantity; 0 removes it", "security": bearer,
                    "parameters": [user.clone(), product.clone()], "requestBody": body("QuantityChange"),
                    "responses": with_body_problems(reach(json!({
                        "200": ok("the basket", basket.clone()), "404": problem("the product is not in the basket"),
                        "409": problem("the basket changed too often at once"), "422": problem("a quantity out of bounds")
                    })))
                },
                "delete": {
                    "operationId": "removeBasketItem", "tags": ["basket"], "summary": "Remove a line", "security": bearer,
                    "parameters": [user, product],
                    "responses": reach(json!({
                        "200": ok("the basket", basket), "404": problem("the product is not in the basket"),
                        "409": problem("the basket changed too often at once")
                    }))
                }
            }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": {
                "BasketCreation": {
                    "type": "object",
                    "properties": { "user_id": { "type": ["string", "null"], "pattern": "^[A-Za-z0-9_-]{1,64}$", "description": "admins only; the caller when absent" } }
                },
                "ItemAddition": {
                    "type": "object", "required": ["product_id"],
                    "properties": {
                        "product_id": { "type": "string", "format": "uuid" },
                        "quantity": { "type": ["integer", "null"], "minimum": 1, "maximum": 99, "description": "added to what the basket holds; 1 when absent" }
                    }
                },
                "QuantityChange": {
                    "type": "object", "required": ["quantity"],
                    "properties": { "quantity": { "type": "integer", "minimum": 0, "maximum": 99 } }
                },
                "BasketItem": {
                    "type": "object", "required": ["product_id", "sku", "name", "unit_price", "quantity", "subtotal", "status"],
                    "properties": {
                        "product_id": { "type": "string", "format": "uuid" }, "sku": { "type": "string" }, "name": { "type": "string" },
                        "unit_price": { "$ref": "#/components/schemas/Money" }, "quantity": { "type": "integer" },
                        "subtotal": { "$ref": "#/components/schemas/Money" },
                        "status": { "type": "string", "enum": ["current", "price_changed", "unavailable", "unchecked"], "description": "how the line compares with the catalog now" },
                        "current_price": { "$ref": "#/components/schemas/Money" }
                    }
                },
                "Basket": {
                    "type": "object", "required": ["user_id", "items", "item_count", "checked"],
                    "properties": {
                        "user_id": { "type": "string" },
                        "items": { "type": "array", "items": { "$ref": "#/components/schemas/BasketItem" } },
                        "total": { "oneOf": [{ "$ref": "#/components/schemas/Money" }, { "type": "null" }], "description": "the sum at the prices held; null when empty" },
                        "item_count": { "type": "integer" },
                        "checked": { "type": "boolean", "description": "whether every line was compared with the catalog just now" },
                        "updated_at": { "type": ["string", "null"], "format": "date-time" }
                    }
                }
            }
        }
    })
}
