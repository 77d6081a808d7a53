//! The OpenAPI 3.1 description of identity's public routes; the gateway
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
    let user = json!({ "$ref": "#/components/schemas/User" });
    let tokens = json!({ "$ref": "#/components/schemas/Tokens" });
    let id = param(
        "id",
        "path",
        "user id (UUIDv7)",
        json!({ "type": "string", "format": "uuid" }),
    );
    let bearer = json!([{ "bearer": [] }]);
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Emporium identity", "version": "1" },
        "paths": {
            "/api/v1/users/register": {
                "post": {
                    "operationId": "registerUser", "tags": ["identity"], "summary": "Create a customer account",
                    "requestBody": body("Registration"),
                    "responses": with_body_problems(json!({
                        "201": ok("the new account; an email that has an account already is answered alike (the account shown is not stored, and its owner's password stays), so that registering does not tell who has an account", user.clone())
                    }))
                }
            },
            "/api/v1/users/login": {
                "post": {
                    "operationId": "login", "tags": ["identity"], "summary": "Sign in: an access token and a refresh token",
                    "requestBody": body("Credentials"),
                    "responses": with_body_problems(json!({
                        "200": ok("signed in", tokens.clone()), "401": problem("wrong email or password"),
                        "422": problem("a field is missing or too long"), "429": problem("too many failed sign-ins; see Retry-After")
                    }))
                }
            },
            "/api/v1/auth/refresh": {
                "post": {
                    "operationId": "refreshSession", "tags": ["identity"], "summary": "Spend a refresh token for a new pair",
                    "requestBody": body("RefreshToken"),
                    "responses": with_body_problems(json!({
                        "200": ok("a new pair; the old refresh token is spent", tokens),
                        "401": problem("the refresh token is not valid, spent or expired"), "422": problem("the token is missing")
                    }))
                }
            },
            "/api/v1/auth/logout": {
                "post": {
                    "operationId": "logout", "tags": ["identity"], "summary": "End the session of a refresh token",
                    "requestBody": body("RefreshToken"),
                    "responses": with_body_problems(json!({
                        "204": { "description": "the session has ended (or never existed)" },
                        "401": problem("not a refresh token"), "422": problem("the token is missing")
                    }))
                }
            },
            "/api/v1/users/me": {
                "get": {
                    "operationId": "getMe", "tags": ["identity"], "summary": "The caller's account", "security": bearer,
                    "responses": { "200": ok("the account", user.clone()), "401": problem("no valid token"), "404": problem("the account is gone") }
                }
            },
            "/api/v1/users/{id}": {
                "get": {
                    "operationId": "getUser", "tags": ["identity"], "summary": "An account (its owner or an admin)", "security": bearer,
                    "parameters": [id],
                    "responses": {
                        "200": ok("the account", user.clone()), "400": problem("bad id"), "401": problem("no valid token"),
                        "403": problem("another user's account"), "404": problem("no such user")
                    }
                },
                "put": {
                    "operationId": "updateUser", "tags": ["identity"], "summary": "Change the profile; role and active are for admins", "security": bearer,
                    "parameters": [id], "requestBody": body("ProfileInput"),
                    "responses": with_body_problems(json!({
                        "200": ok("the account", user.clone()), "400": problem("bad id or body"), "401": problem("no valid token"),
                        "403": problem("another user's account, or role/active without the admin role"), "404": problem("no such user"),
                        "409": problem("the account is the last active admin: demoting or disabling it would leave the shop without one"),
                        "422": problem("a field breaks a rule, or an admin demotes or disables themselves")
                    }))
                }
            },
            "/api/v1/users": {
                "get": {
                    "operationId": "listUsers", "tags": ["identity"], "summary": "Every account, newest first (admin)", "security": bearer,
                    "parameters": [
                        param("email", "query", "part of the email address", json!({ "type": "string", "maxLength": 254 })),
                        param("page", "query", "page number from 1", json!({ "type": "integer", "minimum": 1, "maximum": 1_000_000 })),
                        param("per_page", "query", "items per page", json!({ "type": "integer", "minimum": 1, "maximum": 100 }))
                    ],
                    "responses": {
                        "200": ok("a page of users", json!({ "$ref": "#/components/schemas/UserPage" })),
                        "400": problem("a bad parameter"), "401": problem("no valid token"), "403": problem("not an admin")
                    }
                }
            },
            "/.well-known/jwks.json": {
                "get": {
                    "operationId": "getJwks", "tags": ["identity"], "summary": "The public keys that verify access tokens",
                    "responses": { "200": ok("a JWKS document", json!({ "$ref": "#/components/schemas/Jwks" })) }
                }
            }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": {
                "Registration": {
                    "type": "object", "required": ["email", "password", "name"],
                    "properties": {
                        "email": { "type": "string", "format": "email", "maxLength": 254, "description": "stored trimmed and lower-cased; unique" },
                        "password": {
                            "type": "string", "minLength": 10, "maxLength": 128,
                            "description": "10 to 128 characters, no control characters, not one character repeated, not the email"
                        },
                        "name": { "$ref": "#/components/schemas/PersonName" },
                        "phone": { "$ref": "#/components/schemas/Phone" }
                    }
                },
                "PersonName": {
                    "type": "string", "minLength": 1, "maxLength": 100, "pattern": "\\S",
                    "description": "trimmed; 1 to 100 characters, not only spaces, no control characters"
                },
                "Phone": {
                    "type": ["string", "null"], "maxLength": 32, "pattern": "^[0-9 +().-]*$",
                    "description": "6 to 20 digits with + - ( ) . and spaces; empty or null for none"
                },
                "Credentials": {
                    "type": "object", "required": ["email", "password"],
                    "properties": { "email": { "type": "string", "minLength": 1 }, "password": { "type": "string", "minLength": 1, "maxLength": 128 } }
                },
                "RefreshToken": {
                    "type": "object", "required": ["refresh_token"],
                    "properties": { "refresh_token": { "type": "string", "minLength": 1, "description": "43 characters of base64url" } }
                },
                "ProfileInput": {
                    "type": "object", "required": ["name"],
                    "properties": {
                        "name": { "$ref": "#/components/schemas/PersonName" },
                        "phone": { "$ref": "#/components/schemas/Phone" },
                        "role": { "type": ["string", "null"], "enum": ["customer", "admin", null], "description": "admins only; null or absent keeps it" },
                        "active": { "type": ["boolean", "null"], "description": "admins only; false ends the account's sessions; null or absent keeps it" }
                    }
                },
                "User": {
                    "type": "object",
                    "required": ["id", "email", "name", "role", "active", "created_at", "updated_at"],
                    "properties": {
                        "id": { "type": "string", "format": "uuid" }, "email": { "type": "string" }, "name": { "type": "string" },
                        "phone": { "type": ["string", "null"] }, "role": { "type": "string", "enum": ["customer", "admin"] },
                        "active": { "type": "boolean" },
                        "created_at": { "type": "string", "format": "date-time" }, "updated_at": { "type": "string", "format": "date-time" }
                    }
                },
                "UserPage": {
                    "type": "object",
                    "properties": {
                        "items": { "type": "array", "items": { "$ref": "#/components/schemas/User" } },
                        "page": { "type": "integer" }, "per_page": { "type": "integer" }, "total": { "type": "integer" }
                    }
                },
                "Tokens": {
                    "type": "object",
                    "required": ["access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in", "user"],
                    "properties": {
                        "access_token": { "type": "string", "description": "an Ed25519-signed JWT" },
                        "token_type": { "type": "string", "enum": ["Bearer"] },
                        "expires_in": { "type": "integer", "description": "seconds" },
                        "refresh_token": { "type": "string", "description": "opaque; spent on use" },
                        "refresh_expires_in": { "type": "integer", "description": "seconds" },
                        "user": { "$ref": "#/components/schemas/User" }
                    }
                },
                "Jwks": {
                    "type": "object", "required": ["keys"],
                    "properties": { "keys": { "type": "array", "items": { "type": "object" } } }
                }
            }
        }
    })
}
