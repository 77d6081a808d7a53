//! The OpenAPI 3.1 description of the catalog's public routes; the gateway
//! merges it into the one document it serves.

use emporium_platform::openapi::{ok, param, problem, with_body_problems, with_shared_schemas};
use serde_json::{Value, json};

pub fn document() -> Value {
    with_shared_schemas(own_document())
}

fn own_document() -> Value {
    let product = json!({ "$ref": "#/components/schemas/Product" });
    let input = json!({ "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ProductInput" } } } });
    let id = param(
        "id",
        "path",
        "product id (UUIDv7)",
        json!({ "type": "string", "format": "uuid" }),
    );
    let admin = json!([{ "bearer": [] }]);
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Emporium catalog", "version": "1" },
        "paths": {
            "/api/v1/products": {
                "get": {
                    "operationId": "listProducts", "tags": ["catalog"], "summary": "List, filter and search products",
                    "parameters": [
                        param("category", "query", "category slug", json!({ "type": "string" })),
                        param("q", "query", "full-text search: every word must prefix a word of the name or description", json!({ "type": "string", "maxLength": 200 })),
                        param("min_price", "query", "lowest price, decimal", json!({ "type": "string", "pattern": "^([0-9]{1,15}(\\.[0-9]{1,4})?)?$" })),
                        param("max_price", "query", "highest price, decimal", json!({ "type": "string", "pattern": "^([0-9]{1,15}(\\.[0-9]{1,4})?)?$" })),
                        param("currency", "query", "currency of the price bounds (default USD)", json!({ "type": "string" })),
                        param("sort", "query", "order", json!({ "type": "string", "enum": ["name", "-name", "price", "-price", "created_at", "-created_at"] })),
                        param("page", "query", "page number from 1", json!({ "type": "integer", "minimum": 1, "maximum": 1_000_000 })),
                        param("per_page", "query", "items per page", json!({ "type": "integer", "minimum": 1, "maximum": 100 }))
                    ],
                    "responses": {
                        "200": ok("a page of products", json!({ "$ref": "#/components/schemas/ProductPage" })),
                        "400": problem("a bad parameter")
                    }
                },
                "post": {
                    "operationId": "createProduct", "tags": ["catalog"], "summary": "Create a product (admin)", "security": admin,
                    "requestBody": input,
                    "responses": with_body_problems(json!({
                        "201": ok("created", product.clone()),
                        "401": problem("no valid token"), "403": problem("not an admin"), "409": problem("duplicate SKU")
                    }))
                }
            },
            "/api/v1/products/{id}": {
                "get": {
                    "operationId": "getProduct", "tags": ["catalog"], "parameters": [id],
                    "responses": { "200": ok("the product", product.clone()), "400": problem("bad id"), "404": problem("no such product") }
                },
                "put": {
                    "operationId": "updateProduct", "tags": ["catalog"], "summary": "Replace a product (admin)", "security": admin,
                    "parameters": [id], "requestBody": input,
                    "responses": with_body_problems(json!({
                        "200": ok("updated", product.clone()), "400": problem("bad id or body"), "401": problem("no valid token"),
                        "403": problem("not an admin"), "404": problem("no such product"), "409": problem("duplicate SKU")
                    }))
                },
                "delete": {
                    "operationId": "deleteProduct", "tags": ["catalog"], "summary": "Delete a product (admin)", "security": admin,
                    "parameters": [id],
                    "responses": { "204": { "description": "deleted" }, "400": problem("bad id"), "401": problem("no valid token"), "403": problem("not an admin"), "404": problem("no such product") }
                }
            },
            "/api/v1/products/{id}/images": {
                "post": {
                    "operationId": "uploadProductImage", "tags": ["catalog"], "summary": "Upload an image: the raw PNG, JPEG, GIF or WebP bytes (admin)",
                    "security": admin, "parameters": [id],
                    "requestBody": { "required": true, "content": { "image/*": { "schema": { "type": "string", "contentEncoding": "binary" } } } },
                    "responses": {
                        "201": ok("the product with its new image", product.clone()), "400": problem("bad id, or no image in the body"), "401": problem("no valid token"), "403": problem("not an admin"),
                        "404": problem("no such product"), "413": problem("image too large"), "415": problem("not an image")
                    }
                }
            },
            "/api/v1/products/{id}/images/{name}": {
                "get": {
                    "operationId": "getProductImage", "tags": ["catalog"],
                    "parameters": [id, param("name", "path", "image name", json!({ "type": "string" }))],
                    "responses": { "200": { "description": "the image", "content": { "image/*": {} } }, "400": problem("bad id or name"), "404": problem("no such image") }
                }
            },
            "/api/v1/categories": {
                "get": {
                    "operationId": "listCategories", "tags": ["catalog"],
                    "responses": { "200": ok("every category", json!({ "type": "object", "properties": { "items": { "type": "array", "items": { "$ref": "#/components/schemas/Category" } } } })) }
                },
                "post": {
                    "operationId": "createCategory", "tags": ["catalog"], "summary": "Create a category (admin)", "security": admin,
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["slug", "name"], "additionalProperties": false, "properties": { "slug": { "type": "string", "pattern": "^[a-z0-9-]{1,64}$" }, "name": { "type": "string", "maxLength": 100 } } } } } },
                    "responses": with_body_problems(json!({
                        "201": ok("created", json!({ "$ref": "#/components/schemas/Category" })), "401": problem("no valid token"),
                        "403": problem("not an admin"), "409": problem("exists already")
                    }))
                }
            }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": {
                "ProductInput": {
                    "type": "object", "required": ["sku", "name", "price", "category"], "additionalProperties": false,
                    "properties": {
                        "sku": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" },
                        "name": { "type": "string", "minLength": 1, "maxLength": 200 },
                        "description": { "type": "string", "maxLength": 5000 },
                        "price": { "$ref": "#/components/schemas/Money" },
                        "category": { "type": "string", "pattern": "^[a-z0-9-]{1,64}$", "description": "the slug of an existing category" }
                    }
                },
                "Product": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string", "format": "uuid" }, "sku": { "type": "string" }, "name": { "type": "string" },
                        "description": { "type": "string" }, "price": { "$ref": "#/components/schemas/Money" }, "category": { "type": "string" },
                        "images": { "type": "array", "items": { "type": "object", "properties": { "name": { "type": "string" }, "url": { "type": "string" } } } },
                        "created_at": { "type": "string", "format": "date-time" }, "updated_at": { "type": "string", "format": "date-time" }
                    }
                },
                "ProductPage": {
                    "type": "object",
                    "properties": {
                        "items": { "type": "array", "items": { "$ref": "#/components/schemas/Product" } },
                        "page": { "type": "integer" }, "per_page": { "type": "integer" }, "total": { "type": "integer" }
                    }
                },
                "Category": { "type": "object", "properties": { "slug": { "type": "string" }, "name": { "type": "string" }, "product_count": { "type": "integer" } } }
            }
        }
    })
}
