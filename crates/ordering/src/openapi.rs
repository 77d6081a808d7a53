//! The OpenAPI 3.1 description of ordering's public routes; the gateway
//! merges it into the one document it serves.

use emporium_platform::openapi::{
    ok, page_params, param, problem, with_body_problems, with_shared_schemas,
};
use serde_json::{Value, json};

pub fn document() -> Value {
    with_shared_schemas(own_document())
}

fn own_document() -> Value {
    let order = json!({ "$ref": "#/components/schemas/Order" });
    let bearer = json!([{ "bearer": [] }]);
    let id = param(
        "id",
        "path",
        "order id (UUID)",
        json!({ "type": "string", "format": "uuid" }),
    );
    let [page, per_page] = page_params();
    let statuses = json!([
        "pending",
        "confirmed",
        "processing",
        "shipped",
        "delivered",
        "failed",
        "cancelled"
    ]);
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Emporium ordering", "version": "1" },
        "paths": {
            "/api/v1/orders": {
                "post": {
                    "operationId": "checkout", "tags": ["ordering"],
                    "summary": "Check out the caller's basket (or the items given): price, reserve, pay, confirm. The order comes back confirmed, or failed with its reason and everything undone",
                    "security": bearer,
                    "parameters": [{
                        "name": "Idempotency-Key", "in": "header", "required": false,
                        "description": "a repeat with the same key gets the first answer; the same key with another body is refused",
                        "schema": { "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$" }
                    }],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/CheckoutInput" } } } },
                    "responses": with_body_problems(json!({
                        "201": ok("the order, confirmed or failed", order.clone()),
                        "400": problem("a bad Idempotency-Key or body"), "401": problem("no valid token"),
                        "409": problem("the first request with this Idempotency-Key is still running"),
                        "422": problem("a field breaks a rule, the basket is empty, a product does not exist, or the key was used for another body"),
                        "503": problem("a service the checkout needs is unavailable")
                    }))
                },
                "get": {
                    "operationId": "listOrders", "tags": ["ordering"], "summary": "The caller's orders (every order for an admin), newest first", "security": bearer,
                    "parameters": [page, per_page, param("status", "query", "only orders in this state (empty: any)", json!({ "type": "string", "enum": statuses.as_array().map(|a| { let mut v = a.clone(); v.push(json!("")); v }) }))],
                    "responses": { "200": ok("a page of orders", json!({ "$ref": "#/components/schemas/OrderPage" })), "400": problem("a bad parameter"), "401": problem("no valid token") }
                }
            },
            "/api/v1/orders/{id}": {
                "get": {
                    "operationId": "getOrder", "tags": ["ordering"], "summary": "An order (its buyer or an admin)", "security": bearer,
                    "parameters": [id],
                    "responses": { "200": ok("the order", order.clone()), "400": problem("a bad id"), "401": problem("no valid token"), "404": problem("no such order, or another user's (the two answer alike)") }
                },
                "put": {
                    "operationId": "updateOrder", "tags": ["ordering"], "summary": "Move a confirmed order along: processing → shipped → delivered (admin)", "security": bearer,
                    "parameters": [id],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["status"], "properties": { "status": { "type": "string", "enum": ["processing", "shipped", "delivered"] } } } } } },
                    "responses": with_body_problems(json!({
                        "200": ok("the order", order.clone()), "400": problem("a bad id"), "401": problem("no valid token"), "403": problem("not an admin"),
                        "404": problem("no such order"), "409": problem("not the next state of this order")
                    }))
                },
                "delete": {
                    "operationId": "cancelOrder", "tags": ["ordering"], "summary": "Cancel an order not yet shipped: the payment is refunded and the stock put back", "security": bearer,
                    "parameters": [id],
                    "responses": {
                        "200": ok("the cancelled order", order), "400": problem("a bad id"), "401": problem("no valid token"),
                        "404": problem("no such order, or another user's (the two answer alike)"), "409": problem("the order is not confirmed or processing"), "503": problem("payment is unavailable")
                    }
                }
            }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": {
                "CheckoutInput": {
                    "type": "object", "required": ["card_number"],
                    "properties": {
                        "items": {
                            "type": ["array", "null"], "minItems": 1, "maxItems": 50, "description": "the caller's basket when absent",
                            "items": { "type": "object", "required": ["product_id"], "properties": { "product_id": { "type": "string", "format": "uuid" }, "quantity": { "type": "integer", "minimum": 1, "maximum": 99 } } }
                        },
                        "card_number": { "type": "string", "description": "passed to payment and never kept here" }
                    }
                },
                "Order": {
                    "type": "object", "required": ["id", "user_id", "status", "total", "lines", "created_at", "updated_at"],
                    "properties": {
                        "id": { "type": "string", "format": "uuid" }, "user_id": { "type": "string" },
                        "status": { "type": "string", "enum": statuses },
                        "total": { "$ref": "#/components/schemas/Money" },
                        "lines": { "type": "array", "items": { "type": "object", "required": ["product_id", "sku", "name", "unit_price", "quantity"],
                            "properties": { "product_id": { "type": "string" }, "sku": { "type": "string" }, "name": { "type": "string" }, "unit_price": { "$ref": "#/components/schemas/Money" }, "quantity": { "type": "integer" } } } },
                        "reservation_id": { "type": ["string", "null"] }, "payment_id": { "type": ["string", "null"] },
                        "failure_reason": { "type": ["string", "null"] },
                        "created_at": { "type": "string", "format": "date-time" }, "updated_at": { "type": "string", "format": "date-time" }
                    }
                },
                "OrderPage": {
                    "type": "object", "required": ["items", "page", "per_page", "total"],
                    "properties": { "items": { "type": "array", "items": { "$ref": "#/components/schemas/Order" } }, "page": { "type": "integer" }, "per_page": { "type": "integer" }, "total": { "type": "integer" } }
                }
            }
        }
    })
}
