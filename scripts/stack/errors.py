class StackError(RuntimeError):
    """A local stack component could not be prepared or started; the message says what to do."""
