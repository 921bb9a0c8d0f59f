"""Errors the engine raises on purpose: each message names the problem and the fix."""


class EngineError(Exception):
    """A problem with the user's input, model or parameters (shown to the user as is)."""


class ModelContractError(EngineError):
    """The model's contract is missing, malformed, or cannot be satisfied by the input."""


class Cancelled(EngineError):
    """The run was cancelled; no output was written."""

