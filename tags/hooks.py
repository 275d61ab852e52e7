"""Where tags hook into routing: filled in with tag scoring (``tags.scoring``)."""

from __future__ import annotations
