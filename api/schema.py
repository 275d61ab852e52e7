"""drf-spectacular: the token authentication, and the error answers of every operation, in the schema."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token: `Authorization: Bearer <token>` (`Token <token>` works too).",
        }


ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
    "description": "What went wrong, in words.",
}
# A 400 names each bad field with its messages (``non_field_errors`` for the rest), or says why the body
# could not be read at all (``detail``).
BAD_REQUEST = {
    "type": "object",
    "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "description": "Messages per field, or `detail` when the request could not be read at all.",
}
ANY_OPERATION = {
    401: "No credentials, or a token that is unknown or revoked.",
    403: "The token's scope or the user's role does not allow this operation.",
    406: "The Accept header asks for a format the API does not produce (it answers JSON).",
    429: "Too many requests for this token; the Retry-After header says when to try again.",
    503: "The database or the task broker is unreachable; try again after Retry-After seconds.",
}
WITH_BODY = {
    400: "The body is not JSON, nests deeper than 32 levels, or a field is invalid.",
    413: "The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE (5 MiB by default).",
    415: "The body is not application/json.",
}


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's schema, with every error status an operation can answer documented (JSON bodies)."""

    def error_statuses(self) -> dict[int, str]:
        statuses = dict(ANY_OPERATION)
        if "{" in self.path:
            statuses[404] = "No such object, or the id is not a number."
        if self._is_list_view():
            statuses[400] = "A query parameter is invalid (a filter, `page` or `page_size`)."
            statuses[404] = "The page is past the last one."
        if self.method in ("POST", "PUT", "PATCH"):
            statuses[400] = "A field is invalid, or the request cannot be carried out as it stands."
            if self.get_request_serializer() is not None:
                statuses.update(WITH_BODY)
        return statuses

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, description in sorted(self.error_statuses().items()):
            responses.setdefault(str(code), {"description": description})
        for code, response in responses.items():
            if int(code) >= 400 and "content" not in response:
                schema = BAD_REQUEST if code == "400" else ERROR
                response["content"] = {"application/json": {"schema": self.error_component(code, schema)}}
        return responses

    def error_component(self, code: str, schema: dict) -> dict:
        component = ResolvedComponent(
            name="ValidationErrors" if schema is BAD_REQUEST else "Error",
            type=ResolvedComponent.SCHEMA,
            object=f"error-{code}",
            schema=schema,
        )
        self.registry.register_on_missing(component)
        return component.ref
