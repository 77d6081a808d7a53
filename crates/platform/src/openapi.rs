//! The parts of every service's OpenAPI document that must be the same in
//! all of them: the `Money` and `Problem` schemas and the problem answer.
//! The gateway refuses to merge two documents that name a schema alike but
//! define it differently.

use serde_json::{Value, json};

/// `components.schemas` entries every service's document includes.
pub fn shared_schemas() -> serde_json::Map<String, Value> {
    let mut schemas = serde_json::Map::new();
    schemas.insert(
        "Money".into(),
        json!({
            "type": "object", "required": ["amount", "currency"], "additionalProperties": false,
            "description": "An amount as a decimal string in an ISO 4217 currency; never a float.",
            "properties": {
                "amount": { "type": "string", "pattern": "^[0-9]{1,20}(\\.[0-9]{1,4})?$", "examples": ["19.99"] },
                "currency": { "type": "string", "pattern": "^[A-Z]{3}$", "examples": ["USD"] }
            }
        }),
    );
    schemas.insert(
        "Problem".into(),
        json!({
            "type": "object", "required": ["type", "title", "status", "detail"],
            "description": "An RFC 9457 problem.",
            "properties": {
                "type": { "type": "string" },
                "title": { "type": "string" },
                "status": { "type": "integer" },
                "detail": { "type": "string" },
                "errors": {
                    "type": "array", "description": "each field that breaks a rule",
                    "items": { "type": "object", "required": ["field", "message"], "properties": { "field": { "type": "string" }, "message": { "type": "string" } } }
                },
                "dependency": { "type": "string", "description": "with 503: the dependency that is down (database, cache, broker, or a service)" }
            }
        }),
    );
    schemas
}

/// A problem+json answer, for a response table.
pub fn problem(description: &str) -> Value {
    json!({ "description": description, "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } })
}

/// A JSON answer, for a response table.
pub fn ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

/// A parameter; path parameters are required.
pub fn param(name: &str, location: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": location, "required": location == "path", "description": description, "schema": schema })
}

/// The `page` and `per_page` query parameters every list takes.
pub fn page_params() -> [Value; 2] {
    [
        param(
            "page",
            "query",
            "page number from 1",
            json!({ "type": "integer", "minimum": 1, "maximum": 1_000_000 }),
        ),
        param(
            "per_page",
            "query",
            "items per page",
            json!({ "type": "integer", "minimum": 1, "maximum": 100 }),
        ),
    ]
}

/// A service's own document with the shared schemas added.
pub fn with_shared_schemas(mut doc: Value) -> Value {
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.extend(shared_schemas());
    }
    doc
}

/// `responses` with the answers of any operation that reads a JSON body
/// added where the service did not word them itself.
pub fn with_body_problems(mut responses: Value) -> Value {
    if let Some(map) = responses.as_object_mut() {
        for (status, description) in [
            ("400", "malformed JSON"),
            ("413", "body too large"),
            ("415", "not JSON"),
            ("422", "a field breaks a rule"),
        ] {
            map.entry(status).or_insert_with(|| problem(description));
        }
    }
    responses
}
