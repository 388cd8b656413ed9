"""The OpenAPI document of `patina serve` (``GET /openapi.json``); the fuzz test generates requests from it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import __version__
from .api_access import KEY_HEADER

if TYPE_CHECKING:
    from .config import PatinaConfig


def openapi_document(config: PatinaConfig) -> dict:
    """OpenAPI 3.0 for the endpoints above; ``db`` is an enum of the configured databases."""

    def json_response(description: str, schema: dict | None = None) -> dict:
        return {
            "description": description,
            "content": {"application/json": {"schema": schema or {"$ref": "#/components/schemas/Error"}}},
        }

    errors = {
        "400": json_response("Bad input (the message says what and how to fix it)"),
        "401": json_response("No valid key and not an allowed address", {"$ref": "#/components/schemas/Unauthorized"}),
        "429": {
            **json_response("Rate limited"),
            "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}},
        },
        "403": json_response("The key may not do this (its scopes), or a cross-origin request"),
        "503": json_response("The bucket or Dagster cannot be reached"),
    }
    db_param = {"name": "db", "in": "path", "required": True, "schema": {"type": "string", "enum": list(config.names)}}
    date_param = {
        "name": "date",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
    }
    secured = [{"PatinaKey": []}]
    anything = {"type": "object", "additionalProperties": True}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Patina",
            "version": __version__,
            "description": "Backups of Cloudflare D1 databases: status, list, download, restore guide, trigger.",
        },
        "components": {
            "securitySchemes": {"PatinaKey": {"type": "apiKey", "in": "header", "name": KEY_HEADER}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
                },
                "Unauthorized": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string", "enum": ["unauthorized"]},
                        "message": {"type": "string"},
                    },
                },
                "Backup": {
                    "type": "object",
                    "required": ["database", "date", "location", "sizeBytes", "tables", "rows"],
                    "properties": {
                        "database": {"type": "string"},
                        "date": {"type": "string"},
                        "location": {"type": "string", "enum": ["daily", "weekly"]},
                        "key": {"type": "string"},
                        "member": {"type": "string", "nullable": True},
                        "size": {"type": "string"},
                        "sizeBytes": {"type": "integer"},
                        "storedBytes": {"type": "integer", "nullable": True},
                        "tables": {"type": "integer"},
                        "rows": {"type": "integer"},
                        "createdAt": {"type": "string", "nullable": True},
                        "archivedAt": {"type": "string", "nullable": True},
                        "expiresAt": {"type": "string", "nullable": True},
                        "sqlSha256": {"type": "string"},
                        "dagsterRunId": {"type": "string", "nullable": True},
                        "capturedAt": {"type": "string", "nullable": True},
                        "capturedLate": {"type": "boolean"},
                        "verification": {"type": "string", "enum": ["verified", "failed", "not verified", "damaged"]},
                        "problem": {"type": "string", "nullable": True},
                        "encrypted": {"type": "boolean"},
                    },
                },
                "List": {
                    "type": "object",
                    "required": ["backups", "total", "filtered"],
                    "properties": {
                        "backups": {"type": "array", "items": {"$ref": "#/components/schemas/Backup"}},
                        "total": {"type": "integer"},
                        "filtered": {"type": "integer"},
                    },
                },
                "Status": {
                    "type": "object",
                    "required": ["currentStatus", "instance", "storage", "databases"],
                    "properties": {
                        "currentStatus": {"type": "string", "enum": ["idle", "running", "queued", "unknown"]},
                        "instance": anything,
                        "lastBackup": {**anything, "nullable": True},
                        "nextScheduled": {"type": "string", "nullable": True},
                        "storage": anything,
                        "databases": {"type": "array", "items": anything},
                        "fleets": {"type": "array", "items": anything},
                        "indexRebuilt": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
                "TriggerRequest": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "databases": {"type": "array", "items": {"type": "string", "enum": list(config.names)}},
                        "reason": {"type": "string", "maxLength": 500},
                    },
                },
                "TriggerResponse": {
                    "type": "object",
                    "required": ["jobId", "status", "databases"],
                    "properties": {
                        "jobId": {"type": "string"},
                        "status": {"type": "string"},
                        "databases": {"type": "integer"},
                        "message": {"type": "string"},
                    },
                },
            },
        },
        "paths": {
            "/": {
                "get": {"summary": "What this API is", "responses": {"200": json_response("Documentation", anything)}}
            },
            "/health": {"get": {"summary": "Liveness", "responses": {"200": json_response("Alive", anything)}}},
            "/status": {
                "get": {
                    "summary": "Backup status and recent jobs",
                    "responses": {
                        "200": json_response("Status", {"$ref": "#/components/schemas/Status"}),
                        "401": errors["401"],
                        "429": errors["429"],
                        "503": errors["503"],
                    },
                }
            },
            "/list": {
                "get": {
                    "summary": "All available backups, newest first",
                    "parameters": [
                        {"name": "database", "in": "query", "schema": {"type": "string", "enum": list(config.names)}},
                        {"name": "date", "in": "query", "schema": {"type": "string", "format": "date"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}},
                    ],
                    "responses": {
                        "200": json_response("Backups", {"$ref": "#/components/schemas/List"}),
                        "400": errors["400"],
                        "401": errors["401"],
                        "429": errors["429"],
                        "503": errors["503"],
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format 0.0.4",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "429": errors["429"],
                        "503": errors["503"],
                    },
                }
            },
            "/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": json_response("OpenAPI", anything)}}
            },
            "/download/{date}/{db}": {
                "get": {
                    "summary": "Download one backup's SQL (checked against its sha256 as it streams), or its age file",
                    "security": secured,
                    "parameters": [date_param, db_param],
                    "responses": {
                        "200": {
                            "description": "The SQL; for an encrypted backup, unless this server holds the identity "
                            "and the key may have plaintext, the stored age file instead (X-Patina-Encrypted: age; "
                            "for a day kept only in a weekly archive, that archive, X-Patina-Member naming the day)",
                            "headers": {
                                "X-Patina-SQL-SHA256": {"schema": {"type": "string"}},
                                "X-Patina-Encrypted": {"schema": {"type": "string", "enum": ["age"]}},
                                "X-Patina-Stored-SHA256": {"schema": {"type": "string"}},
                                "X-Patina-Member": {"schema": {"type": "string"}},
                            },
                            "content": {
                                "application/sql": {"schema": {"type": "string", "format": "binary"}},
                                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                            },
                        },
                        "404": json_response("No backup of that database on that day"),
                        **{code: errors[code] for code in ("400", "401", "403", "429", "503")},
                    },
                }
            },
            "/restore-guide/{db}": {
                "get": {
                    "summary": "How to restore a database, with this installation's commands",
                    "security": secured,
                    "parameters": [db_param],
                    "responses": {
                        "200": json_response("The guide", anything),
                        **{code: errors[code] for code in ("400", "401", "403", "429", "503")},
                    },
                }
            },
            "/trigger": {
                "post": {
                    "summary": "Back up some or all databases now",
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TriggerRequest"}}},
                    },
                    "responses": {
                        "202": json_response("Started", {"$ref": "#/components/schemas/TriggerResponse"}),
                        "502": json_response(
                            "Started and already failed (the response says why)",
                            {"$ref": "#/components/schemas/TriggerResponse"},
                        ),
                        "413": json_response("Body too large"),
                        "415": json_response("The body is not application/json"),
                        **{code: errors[code] for code in ("400", "401", "403", "429", "503")},
                    },
                }
            },
        },
    }
