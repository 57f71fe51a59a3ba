"""What a service says when it cannot do what it was asked: the interfaces turn
these into a 400 or 409 with field messages (API), a form or message error
(admin, pages) and a one-line error (commands)."""


class ServiceError(Exception):
    """A request that cannot be carried out; `errors` maps fields to messages,
    or a list's field to its bad items' messages by index (`{"params": {"3": [...]}}`)."""

    def __init__(self, message: str | dict[str, list[str] | dict[str, list[str]]]):
        self.errors = message if isinstance(message, dict) else {"detail": [message]}
        super().__init__(message if isinstance(message, str) else "; ".join(self.messages))

    @property
    def messages(self) -> list[str]:
        messages = []
        for field, msgs in self.errors.items():
            if isinstance(msgs, dict):
                messages += [f"{field}[{index}]: {msg}" for index, item in msgs.items() for msg in item]
            else:
                messages += [f"{field}: {msg}" if field != "detail" else msg for msg in msgs]
        return messages


class InvalidInput(ServiceError):
    """Bad input from the caller (HTTP 400)."""


class Conflict(ServiceError):
    """The request clashes with the current state of an object (HTTP 409)."""
