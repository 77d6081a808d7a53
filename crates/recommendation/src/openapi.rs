//! The OpenAPI 3.1 description of recommendation's public routes; the
//! gateway merges it into the one document it serves.

use emporium_platform::openapi::{ok, param, problem, with_shared_schemas};
use serde_json::{Value, json};

use crate::domain::{DEFAULT_LIMIT, MAX_LIMIT};

pub fn document() -> Value {
    with_shared_schemas(own_document())
}

fn own_document() -> Value {
    let list = json!({ "$ref": "#/components/schemas/RecommendationList" });
    let limit = param(
        "limit",
        "query",
        "how many to answer at most",
        json!({ "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT }),
    );
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Emporium recommendation", "version": "1" },
        "paths": {
            "/api/v1/recommendations": {
                "get": {
                    "operationId": "recommendForProduct", "tags": ["recommendation"],
                    "summary": "Products also bought with a product, ranked by how often bought together, then best sellers of its category; never the product itself, a deleted one or one out of stock",
                    "parameters": [
                        {
                            "name": "product_id", "in": "query", "required": true, "description": "product id (UUID)",
                            "schema": { "type": "string", "format": "uuid" }
                        },
                        limit.clone()
                    ],
                    "responses": {
                        "200": ok("recommended products, best first", list.clone()),
                        "400": problem("a missing or malformed product_id, or a limit out of bounds"),
                        "404": problem("no such product, or it was deleted")
                    }
                }
            },
            "/api/v1/recommendations/me": {
                "get": {
                    "operationId": "recommendForMe", "tags": ["recommendation"],
                    "summary": "Products for the signed-in customer from their own orders (best sellers for a new customer); never one they bought already",
                    "security": [{ "bearer": [] }],
                    "parameters": [limit],
                    "responses": {
                        "200": ok("recommended products, best first", list),
                        "400": problem("a limit out of bounds"),
                        "401": problem("no valid token")
                    }
                }
            }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": {
                "RecommendationList": {
                    "type": "object",
                    "properties": {
                        "items": { "type": "array", "items": { "$ref": "#/components/schemas/Recommendation" } }
                    }
                },
                "Recommendation": {
                    "type": "object",
                    "properties": {
                        "product_id": { "type": "string", "format": "uuid" },
                        "sku": { "type": "string" },
                        "category": { "type": "string" },
                        "score": { "type": "integer", "description": "orders that held it with the asked product(s); for a best seller, orders that held it" },
                        "reason": { "type": "string", "enum": ["also_bought", "best_seller"] }
                    }
                }
            }
        }
    })
}
