//! USING kafka against a real server (being written).
