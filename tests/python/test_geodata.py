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
import pytest
import shapely
import shapely.geometry
from shapely import STRtree

LAYERS = pathlib.Path(__file__).resolve().parents[1] / "data" / "geodata"


def create_function(cur, name="geodata"):
    cur.execute(
        f"""CREATE OR REPLACE FUNCTION {name} USING geodata OPTIONS (
              countries '{LAYERS / "world_countries.csv"}', states '{LAYERS / "us_states.csv"}',
              counties '{LAYERS / "us_counties.csv"}', zip_points '{LAYERS / "us_zip_codes.csv"}',
              dma '{LAYERS / "dma.csv"}')"""
    )


def read_wkt_layer(name):
    csv.field_size_limit(sys.maxsize)
    with open(LAYERS / name, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, [shapely.from_wkt(r.pop("wkt")) for r in rows]


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
        # Field access on the call, as Spark writes it, with bound parameters too.
        cur.execute("SELECT geodata(lon, lat).city, geodata(lon, lat).zip_code FROM (VALUES (-83.1186093, 42.3677203)) AS p(lon, lat)")
        assert cur.fetchone() == ("Detroit", "48206")
        cur.execute("SELECT geodata(%s, %s).county", (-83.1186093, 42.3677203))
        assert cur.fetchone() == ("Wayne",)


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

    rows, geoms = read_wkt_layer("us_counties.csv")
    names = [r["county_name"] for r in rows]
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


S3_ENDPOINT = os.environ.get("BOWMAN_TEST_S3_ENDPOINT")


def geoparquet(rows, geoms, geometry_types):
    """A GeoParquet 1.1 file (WKB geometry column, `geo` metadata) as GeoPandas writes it."""
    import io
    import json

    columns = {k: [r[k] for r in rows] for k in rows[0]}
    columns["geometry"] = shapely.to_wkb(geoms)
    table = pa.table(columns)
    meta = {"version": "1.1.0", "primary_column": "geometry",
            "columns": {"geometry": {"encoding": "WKB", "geometry_types": geometry_types,
                                     "crs": {"id": {"authority": "OGC", "code": "CRS84"}}}}}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"geo": json.dumps(meta).encode()})
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


@pytest.mark.skipif(
    not S3_ENDPOINT and not os.environ.get("BOWMAN_TEST_REQUIRE_SERVICES"),
    reason="set BOWMAN_TEST_S3_* (scripts/test starts SeaweedFS)",
)
def test_geojson_and_geoparquet_layers_on_s3_answer_like_csv(dsn):
    """States as GeoParquet, counties as GeoJSON and ZIP centroids as GeoParquet points, all on
    S3, give the same answers as the CSV layers on local disk."""
    import json
    import uuid

    import boto3

    bucket = os.environ["BOWMAN_TEST_S3_BUCKET"]
    prefix = f"pytest-geodata-{uuid.uuid4().hex}"
    s3 = boto3.client("s3", endpoint_url=S3_ENDPOINT, region_name="us-east-1",
                      aws_access_key_id=os.environ["BOWMAN_TEST_S3_ACCESS_KEY"],
                      aws_secret_access_key=os.environ["BOWMAN_TEST_S3_SECRET_KEY"])
    states, state_geoms = read_wkt_layer("us_states.csv")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/states.parquet", Body=geoparquet(states, state_geoms, ["MultiPolygon"]))
    counties, county_geoms = read_wkt_layer("us_counties.csv")
    collection = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {**r, "row": i}, "geometry": shapely.geometry.mapping(g)}
        for i, (r, g) in enumerate(zip(counties, county_geoms))]}
    s3.put_object(Bucket=bucket, Key=f"{prefix}/counties.geojson", Body=json.dumps(collection).encode())
    with open(LAYERS / "us_zip_codes.csv", newline="") as f:
        zips = list(csv.DictReader(f))
    zip_points = shapely.points([float(z.pop("longitude")) for z in zips], [float(z.pop("latitude")) for z in zips])
    s3.put_object(Bucket=bucket, Key=f"{prefix}/zips.parquet", Body=geoparquet(zips, zip_points, ["Point"]))

    secret = os.environ["BOWMAN_TEST_S3_SECRET_KEY"]
    rng = np.random.default_rng(7)
    lon, lat = rng.uniform(-124.8, -66.9, 3000), rng.uniform(24.4, 49.4, 3000)
    values = ", ".join(f"({i}, {float(x)!r}, {float(y)!r})" for i, (x, y) in enumerate(zip(lon, lat)))
    with psycopg.connect(dsn, autocommit=True) as c:
        cur = c.cursor()
        create_function(cur)
        cur.execute(
            f"""CREATE OR REPLACE FUNCTION geodata_s3 USING geodata OPTIONS (
                  states 's3://{bucket}/{prefix}/states.parquet', counties 's3://{bucket}/{prefix}/counties.geojson',
                  zip_points 's3://{bucket}/{prefix}/zips.parquet', endpoint '{S3_ENDPOINT}',
                  access_key_id '{os.environ["BOWMAN_TEST_S3_ACCESS_KEY"]}', secret_access_key '{secret}',
                  region 'us-east-1', allow_http 'true')"""
        )
        cur.execute("SELECT g.state, g.state_code, g.county, g.city, g.zip_code FROM (SELECT geodata_s3(-83.1186093, 42.3677203) AS g)")
        assert cur.fetchone() == ("Michigan", "MI", "Wayne", "Detroit", "48206")
        cur.execute(
            f"""SELECT id, a.state, a.county, a.city, a.zip_code, b.state, b.county, b.city, b.zip_code
                FROM (SELECT id, geodata(x, y) AS a, geodata_s3(x, y) AS b FROM (VALUES {values}) AS p(id, x, y))
                ORDER BY id"""
        )
        rows = cur.fetchall()
        assert len(rows) == 3000
        # About 57% of the bounding box is inside a US county (the rest is ocean, Canada, Mexico).
        assert sum(1 for r in rows if r[2] is not None) > 1500
        for r in rows:
            assert r[1:5] == r[5:9], r
        # The secret stays out of the catalog tables.
        cur.execute("SELECT * FROM information_schema.routines WHERE routine_name = 'geodata_s3'")
        assert secret not in repr(cur.fetchall())
        cur.execute("DROP FUNCTION geodata_s3")
