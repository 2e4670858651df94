"""The API's JSON parser: DRF's, reading through ``json_loads_untrusted``.

DRF's own parser lets a deeply nested body crash the request (``RecursionError``, a 500) and lets
through NUL characters, lone surrogates and infinite numbers that the database then fails on.
"""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError

from server.core.untrusted_json import UntrustedJSONError, json_loads_untrusted


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = parsers.get_encoding(parser_context or {})
        try:
            text = stream.read().decode(encoding)
        except UnicodeDecodeError:
            raise ParseError(f"The request body is not valid {encoding} text.") from None
        try:
            return json_loads_untrusted(text)
        except UntrustedJSONError as error:
            if error.path:  # valid JSON with a value that cannot be stored: name the field
                raise ValidationError({error.path: [f"This value {error.message}."]}) from None
            raise ParseError(f"The request body {error.message}.") from None
