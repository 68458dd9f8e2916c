//! USING redis against a real server (being written).
