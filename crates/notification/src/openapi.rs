//! The OpenAPI 3.1 description of notification's public routes; the
//! gateway merges it into the one document it serves.

use emporium_platform::openapi::{
    ok, page_params, param, problem, with_body_problems, with_shared_schemas,
};
use serde_json::{Value, json};

use crate::domain::MAX_KIND;
use crate::http::MAX_BODY;
use crate::store::MAX_SUBJECT;

pub fn document() -> Value {
    with_shared_schemas(own_document())
}

fn own_document() -> Value {
    let bearer = json!([{ "bearer": [] }]);
    let one = json!({ "$ref": "#/components/schemas/Notification" });
    let [page, per_page] = page_params();
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Emporium notification", "version": "1" },
        "paths": {
            "/api/v1/notifications/send": {
                "post": {
                    "operationId": "sendNotification", "tags": ["notification"],
                    "summary": "Queue a message to a user (by id: their email or phone) or to an address (admin); it is sent with retries, and its record tells how it went",
                    "security": bearer,
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/SendNotification" } } } },
                    "responses": with_body_problems(json!({
                        "202": {
                            "description": "queued; the Location header names its record",
                            "headers": { "Location": { "schema": { "type": "string" } } },
                            "content": { "application/json": { "schema": one.clone() } }
                        },
                        "401": problem("no valid token"),
                        "403": problem("not an admin"),
                        "422": problem("a field breaks a rule, or the user is unknown or has no phone number"),
                        "503": problem("identity is unavailable")
                    }))
                }
            },
            "/api/v1/notifications": {
                "get": {
                    "operationId": "listNotifications", "tags": ["notification"],
                    "summary": "The caller's messages, newest first (every user's for an admin)",
                    "security": bearer,
                    "parameters": [
                        param("status", "query", "only messages in this state", json!({ "type": "string", "enum": ["queued", "sent", "failed"] })),
                        param("type", "query", "only messages of this type: an event type, or `manual`", json!({ "type": "string", "maxLength": MAX_KIND })),
                        param("user_id", "query", "only this user's messages (an admin's filter; others may give only their own id)", json!({ "type": "string", "maxLength": 64 })),
                        page,
                        per_page
                    ],
                    "responses": {
                        "200": ok("one page of messages", json!({ "$ref": "#/components/schemas/NotificationPage" })),
                        "400": problem("a parameter out of bounds"),
                        "401": problem("no valid token"),
                        "403": problem("another user's messages, asked by a customer")
                    }
                }
            },
            "/api/v1/notifications/{id}": {
                "get": {
                    "operationId": "getNotification", "tags": ["notification"],
                    "summary": "One message (its recipient or an admin)",
                    "security": bearer,
                    "parameters": [param("id", "path", "notification id (UUID)", json!({ "type": "string", "format": "uuid" }))],
                    "responses": {
                        "200": ok("the message", one),
                        "400": problem("a malformed id"),
                        "401": problem("no valid token"),
                        "404": problem("no such message, or not yours")
                    }
                }
            }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": {
                "SendNotification": {
                    "type": "object",
                    "properties": {
                        "user_id": { "type": "string", "format": "uuid", "description": "a user; give this or `to`" },
                        "to": { "type": "string", "maxLength": 254, "description": "an email address, or an E.164 phone number for `sms`; give this or `user_id`" },
                        "channel": { "type": "string", "enum": ["email", "sms"], "default": "email" },
                        "subject": { "type": "string", "maxLength": MAX_SUBJECT, "description": "one line; required for an email" },
                        "body": { "type": "string", "minLength": 1, "maxLength": MAX_BODY }
                    },
                    "required": ["body"]
                },
                "NotificationPage": {
                    "type": "object",
                    "properties": {
                        "items": { "type": "array", "items": { "$ref": "#/components/schemas/Notification" } },
                        "page": { "type": "integer" },
                        "per_page": { "type": "integer" },
                        "total": { "type": "integer" }
                    }
                },
                "Notification": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string", "format": "uuid" },
                        "user_id": { "type": ["string", "null"] },
                        "channel": { "type": "string", "enum": ["email", "sms"] },
                        "recipient": { "type": "string" },
                        "type": { "type": "string", "description": "the event type it answers, or `manual`" },
                        "subject": { "type": "string" },
                        "body_text": { "type": "string" },
                        "body_html": { "type": ["string", "null"] },
                        "status": { "type": "string", "enum": ["queued", "sent", "failed"] },
                        "attempts": { "type": "integer" },
                        "error": { "type": ["string", "null"], "description": "why the last attempt failed, or why it waits" },
                        "event_id": { "type": ["string", "null"] },
                        "next_attempt_at": { "type": ["string", "null"], "format": "date-time" },
                        "created_at": { "type": "string", "format": "date-time" },
                        "updated_at": { "type": "string", "format": "date-time" }
                    }
                }
            }
        }
    })
}
