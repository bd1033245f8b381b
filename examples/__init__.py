"""Library mode examples: the seed's three use cases with their redis-py pools instrumented."""
