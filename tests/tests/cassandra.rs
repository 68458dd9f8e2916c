//! USING cassandra against a real server (being written).
