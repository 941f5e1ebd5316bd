"""capstate.providers: the thin I/O layer (request builders, response parsers, the HTTP executor).

Imports flow one way: providers -> capstate. The engine never imports this package.
"""

__all__: list[str] = []
