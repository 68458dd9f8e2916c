"""geodata(longitude, latitude) against shapely 2 on the same layers.

On 100K uniformly random points in the US bounding box, the county Bowman answers must be the
county shapely's STRtree + contains answers, for every point farther than 1e-9 degrees from any
county boundary (closer points may fall either way, and Bowman's own rule decides them).
"""
import csv
import os
import pathlib
import sys
import tempfile

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from shapely import STRtree

LAYERS = pathlib.Path(__file__).resolve().parents[1] / "data" / "geodata"


def create_function(cur, name="geodata"):
    cur.execute(
        f"""CREATE OR REPLACE FUNCTION {name} USING geodata OPTIONS (
              countries '{LAYERS / "world_countries.csv"}', states '{LAYERS / "us_states.csv"}',
              counties '{LAYERS / "us_counties.csv"}', zip_points '{LAYERS / "us_zip_codes.csv"}',
              dma '{LAYERS / "dma.csv"}')"""
    )


def test_known_answer_detroit(dsn):
    with psycopg.connect(dsn, autocommit=True) as c:
        cur = c.cursor()
        create_function(cur)
        cur.execute(
            """SELECT g.country, g.country_code, g.state, g.state_code, g.county, g.city, g.zip_code, g.dma_name, g.dma_number
               FROM (SELECT geodata(-83.1186093, 42.3677203) AS g)"""
        )
        assert cur.fetchone() == (
            "United States of America", "US", "Michigan", "MI", "Wayne", "Detroit", "48206", "Detroit", "505",
        )
        # NULL-safe and out of range: a NULL struct, and a struct of NULLs.
        cur.execute("SELECT geodata(NULL, 42.0) IS NULL, get_field(geodata(500, 42.0), 'county') IS NULL")
        assert cur.fetchone() == (True, True)


def test_counties_agree_with_shapely(dsn):
    rng = np.random.default_rng(20261130)
    n = 100_000
    lon = rng.uniform(-124.8, -66.9, n)
    lat = rng.uniform(24.4, 49.4, n)
    work = tempfile.mkdtemp(prefix="bowman-geodata-")
    pq.write_table(pa.table({"id": np.arange(n, dtype=np.int64), "lon": lon, "lat": lat}), os.path.join(work, "points.parquet"))

    with psycopg.connect(dsn, autocommit=True) as c:
        cur = c.cursor()
        create_function(cur)
        cur.execute(f"CREATE EXTERNAL TABLE geo_points STORED AS PARQUET LOCATION '{work}'")
        cur.execute("SELECT id, g.county FROM (SELECT id, geodata(lon, lat) AS g FROM geo_points) ORDER BY id")
        bowman = [r[1] for r in cur.fetchall()]
    assert len(bowman) == n

    csv.field_size_limit(sys.maxsize)
    names, geoms = [], []
    with open(LAYERS / "us_counties.csv", newline="") as f:
        for row in csv.DictReader(f):
            names.append(row["county_name"])
            geoms.append(shapely.from_wkt(row["wkt"]))
    tree = STRtree(geoms)
    points = shapely.points(lon, lat)
    pt_idx, geom_idx = tree.query(points, predicate="within")
    inside = {}
    for p, g in zip(pt_idx, geom_idx):
        inside.setdefault(int(p), []).append(int(g))
    # Distance from each point to the nearest county boundary decides which points count.
    boundaries = STRtree([g.boundary for g in geoms])
    _, dist = boundaries.query_nearest(points, return_distance=True, all_matches=False)
    checked = mismatches = 0
    for i in range(n):
        if dist[i] <= 1e-9:
            continue
        hits = inside.get(i, [])
        expected = names[hits[0]] if len(hits) == 1 else None
        if len(hits) > 1:
            continue  # overlapping polygons in the source data: no single answer
        checked += 1
        if bowman[i] != expected:
            mismatches += 1
            if mismatches <= 5:
                print("mismatch", i, lon[i], lat[i], bowman[i], expected)
    assert checked > 99_000
    assert mismatches == 0, f"{mismatches} of {checked} points differ from shapely"
