"""A delta's life: produce (records checked, packed, uploaded, announced), read, archive,
and the queue that announces it."""
