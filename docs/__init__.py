"""capstate.docs: the documentation in docs/, shipped in the wheel for `capstate codes` and `capstate explain`."""
