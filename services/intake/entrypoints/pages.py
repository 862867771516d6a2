"""The intake's pages (the operator console, the daily report): their catalogue and templates.

Texts live in `i18n/` (`zh.json` and the other languages, split into parts by area such as
`zh.report.json`); templates in `templates/`. See `shared.web.pages`.
"""

from __future__ import annotations

from importlib import resources

from shared.web.i18n import Catalogue

CATALOGUE = Catalogue(resources.files(__package__).joinpath("i18n"))
