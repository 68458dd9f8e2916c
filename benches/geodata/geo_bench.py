"""Reverse-geocoding benchmark: Bowman's geodata() against shapely 2 and SedonaDB.

Points: N uniformly random in the US bounding box plus N "real-looking" event points (ZIP
centroids drawn at random, jittered by about 5 km). Layers: the four shared ones (world
countries, US states, US counties, ZIP centroids).

- Bowman: `geodata(lon, lat)` over a Parquet table, every field consumed (release build, pgwire).
- shapely 2: STRtree + `within` per polygon layer, STRtree.query_nearest for the ZIP layer.
- SedonaDB: `ST_Contains` spatial joins with the state and county layers (0.5.0 crashes on the
  world countries layer, and has no bounded-nearest join for ZIPs here: its time covers less
  work than the other two).

Each engine runs once to warm up, then the best of `--repeat` counts. Prints points/s and ratios.
"""

import argparse
import csv
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from shapely import STRtree

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bowman_server import best_of, bowman_server, libpq_dsn  # noqa: E402

csv.field_size_limit(sys.maxsize)


def read_polygons(path, name_col):
    names, geoms, wkts = [], [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            names.append(row[name_col])
            wkts.append(row["wkt"])
            geoms.append(shapely.from_wkt(row["wkt"]))
    return names, geoms, wkts


def make_points(layers, n, seed):
    rng = np.random.default_rng(seed)
    lon = rng.uniform(-124.8, -66.9, n)
    lat = rng.uniform(24.4, 49.4, n)
    zlat, zlon = [], []
    with open(os.path.join(layers, "us_zip_codes.csv"), newline="") as f:
        for row in csv.DictReader(f):
            zlat.append(float(row["latitude"]))
            zlon.append(float(row["longitude"]))
    pick = rng.integers(0, len(zlat), n)
    elon = np.array(zlon)[pick] + rng.normal(0, 0.05, n)
    elat = np.array(zlat)[pick] + rng.normal(0, 0.05, n)
    return np.concatenate([lon, elon]), np.concatenate([lat, elat])


def run_shapely(layers, lon, lat, repeat):
    polys = [
        read_polygons(os.path.join(layers, "world_countries.csv"), "country_name"),
        read_polygons(os.path.join(layers, "us_states.csv"), "state_name"),
        read_polygons(os.path.join(layers, "us_counties.csv"), "county_name"),
    ]
    zips = []
    with open(os.path.join(layers, "us_zip_codes.csv"), newline="") as f:
        for row in csv.DictReader(f):
            zips.append((row["zip"], float(row["longitude"]), float(row["latitude"])))
    trees = [STRtree(g) for _, g, _ in polys]
    zip_tree = STRtree(shapely.points([z[1] for z in zips], [z[2] for z in zips]))

    def work():
        points = shapely.points(lon, lat)
        counties = None
        for (names, _, _), tree in zip(polys, trees):
            p, g = tree.query(points, predicate="within")
            counties = (p, g)
        nearest = zip_tree.query_nearest(points, max_distance=0.25, all_matches=False)
        return len(counties[0]), nearest.shape[1]

    return best_of(work, repeat)


def run_sedonadb(layers, lon, lat, repeat):
    """ST_Contains joins of the points with the state and county layers, one query per layer.

    SedonaDB 0.5.0 crashes (SIGSEGV) joining with the world countries layer, so that layer is
    left out and its time covers less work than the other engines'.
    """
    import sedonadb

    sd = sedonadb.connect()
    sd.create_data_frame(pa.table({"id": np.arange(len(lon)), "lon": lon, "lat": lat})).to_view("pts")
    queries = []
    for name, path, col in [("states", "us_states.csv", "state_name"), ("counties", "us_counties.csv", "county_name")]:
        names, _, wkts = read_polygons(os.path.join(layers, path), col)
        sd.create_data_frame(pa.table({"name": names, "wkt": wkts})).to_view(f"{name}_wkt")
        sd.sql(f"SELECT name, ST_GeomFromWKT(wkt) AS geom FROM {name}_wkt").to_memtable().to_view(name)
        queries.append(f"SELECT count(l.name) FROM pts p LEFT JOIN {name} l ON ST_Contains(l.geom, ST_Point(p.lon, p.lat))")
    return best_of(lambda: [sd.sql(q).to_arrow_table().to_pylist()[0] for q in queries], repeat)


def run_bowman(bin_path, layers, work, repeat):
    with bowman_server(bin_path, os.path.join(work, "data")) as (_, pg_addr, _):
        c = psycopg.connect(libpq_dsn(pg_addr), autocommit=True)
        t = time.perf_counter()
        c.execute(
            f"""CREATE FUNCTION geodata USING geodata OPTIONS (
                  countries '{layers}/world_countries.csv', states '{layers}/us_states.csv',
                  counties '{layers}/us_counties.csv', zip_points '{layers}/us_zip_codes.csv')"""
        )
        load = time.perf_counter() - t
        c.execute(f"CREATE EXTERNAL TABLE pts STORED AS PARQUET LOCATION '{work}/points'")
        q = """SELECT count(g.country), count(g.state), count(g.county), count(g.zip_code), count(g.city)
               FROM (SELECT geodata(lon, lat) AS g FROM pts)"""
        best, out = best_of(lambda: c.execute(q).fetchone(), repeat)
        # The work SedonaDB does: the state and county layers only.
        c.execute(f"CREATE FUNCTION geodata_sc USING geodata OPTIONS (states '{layers}/us_states.csv', counties '{layers}/us_counties.csv')")
        q = "SELECT count(g.state), count(g.county) FROM (SELECT geodata_sc(lon, lat) AS g FROM pts)"
        best_sc, _ = best_of(lambda: c.execute(q).fetchone(), repeat)
        c.close()
        return best, out, load, best_sc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--layers", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--points", type=int, default=1_000_000, help="random points; as many event points again")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--sedona-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    lon, lat = make_points(args.layers, args.points, args.seed)
    n = len(lon)
    if args.sedona_only:
        dt, dout = run_sedonadb(args.layers, lon, lat, args.repeat)
        print(f"SEDONA {dt} {dout}", flush=True)
        return
    os.makedirs(os.path.join(args.work, "points"), exist_ok=True)
    pq.write_table(pa.table({"lon": lon, "lat": lat}), os.path.join(args.work, "points", "points.parquet"), row_group_size=131072)
    print(f"{n:,} points ({args.points:,} uniform in the US bounding box, {args.points:,} near ZIP centroids)", flush=True)

    build = os.path.basename(os.path.dirname(os.path.abspath(args.bin)))
    bt, bout, load, bt_sc = run_bowman(args.bin, args.layers, args.work, args.repeat)
    print(f"Bowman geodata() ({build}, 4 layers): {bt:.3f}s, {n / bt:,.0f} points/s (layers loaded and indexed in {load:.2f}s; "
          f"non-NULL country/state/county/zip/city: {bout})", flush=True)
    print(f"Bowman geodata() ({build}, states and counties only): {bt_sc:.3f}s, {n / bt_sc:,.0f} points/s", flush=True)
    st, _ = run_shapely(args.layers, lon, lat, args.repeat)
    print(f"shapely 2.1 STRtree (4 layers): {st:.3f}s, {n / st:,.0f} points/s", flush=True)
    # SedonaDB runs in a child process: a crash there must not lose the other results.
    child = subprocess.run(
        [sys.executable, "-W", "ignore", __file__, "--sedona-only", "--bin", args.bin, "--layers", args.layers, "--work", args.work,
         "--points", str(args.points), "--repeat", str(args.repeat), "--seed", str(args.seed)],
        capture_output=True, text=True,
    )
    dt = None
    for line in child.stdout.splitlines():
        if line.startswith("SEDONA "):
            dt = float(line.split()[1])
            print(f"SedonaDB 0.5 ST_Contains joins (states and counties only): {dt:.3f}s, {n / dt:,.0f} points/s; matches {line.split(' ', 2)[2]}")
    if dt is None:
        print(f"SedonaDB did not finish (exit {child.returncode}): {child.stderr.strip().splitlines()[-1:] or ''}")
    print(f"ratio Bowman/shapely time (4 layers): {bt / st:.3f}x"
          + (f"; Bowman/SedonaDB time (states and counties): {bt_sc / dt:.3f}x" if dt else "")
          + " (below 1 means Bowman is faster)")

if __name__ == "__main__":
    main()
