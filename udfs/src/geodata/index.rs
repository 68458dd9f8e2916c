//! Spatial indices behind `geodata(longitude, latitude)`: polygon layers answered by
//! point-in-polygon tests over an R-tree of polygon bounding boxes, and a point layer (ZIP
//! centroids) answered by the nearest point within a distance.
//!
//! Answers are deterministic: a point strictly inside a polygon wins over one on a boundary;
//! among polygons that only touch the point (shared borders), the region read first wins.
//! Coordinates outside [-180, 180] x [-90, 90], NaN or infinite have no answer.

use std::io::Read;

use geo::{BoundingRect, Coord, MultiPolygon, Polygon};
use geo::coordinate_position::CoordPos;
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};

use super::formats::{LayerFormat, read_features};

/// Something went wrong reading a layer; says which row and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LayerError(pub String);

/// A polygon prepared for many point tests: its edges (every ring) in an R-tree, so a test looks
/// only at the edges a ray from the point to the east can cross — O(log n) instead of O(n) for
/// country outlines with thousands of vertices. Even-odd counting makes holes outside.
#[derive(Debug)]
struct PreparedPolygon {
    edges: RTree<GeomWithData<Rectangle<[f64; 2]>, ([f64; 2], [f64; 2])>>,
    max_x: f64,
}

impl PreparedPolygon {
    fn new(p: &Polygon<f64>) -> Self {
        let mut edges = Vec::new();
        let mut max_x = f64::NEG_INFINITY;
        for ring in std::iter::once(p.exterior()).chain(p.interiors()) {
            for l in ring.lines() {
                let (a, b) = ([l.start.x, l.start.y], [l.end.x, l.end.y]);
                max_x = max_x.max(a[0]).max(b[0]);
                edges.push(GeomWithData::new(Rectangle::from_corners(a, b), (a, b)));
            }
        }
        PreparedPolygon { edges: RTree::bulk_load(edges), max_x }
    }

    fn position(&self, x: f64, y: f64) -> CoordPos {
        let ray = AABB::from_corners([x, y], [self.max_x.max(x), y]);
        let mut inside = false;
        for e in self.edges.locate_in_envelope_intersecting(&ray) {
            let ([ax, ay], [bx, by]) = e.data;
            // On the edge itself?
            let cross = (bx - ax) * (y - ay) - (by - ay) * (x - ax);
            if cross == 0.0 && x >= ax.min(bx) && x <= ax.max(bx) && y >= ay.min(by) && y <= ay.max(by) {
                return CoordPos::OnBoundary;
            }
            // Half-open rule: a vertex on the ray counts once.
            if (ay > y) != (by > y) {
                let xi = ax + (y - ay) * (bx - ax) / (by - ay);
                if xi > x {
                    inside = !inside;
                }
            }
        }
        if inside { CoordPos::Inside } else { CoordPos::Outside }
    }
}

/// One region of a polygon layer: its attribute values, in the layer's column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub values: Vec<Option<String>>,
}

/// A layer of (multi)polygons with attributes.
#[derive(Debug)]
pub struct PolygonLayer {
    /// Attribute names (the CSV columns other than the geometry).
    pub columns: Vec<String>,
    regions: Vec<Region>,
    /// Each polygon of each region separately, so a bounding box stays tight.
    polygons: Vec<(u32, Polygon<f64>)>,
    prepared: Vec<PreparedPolygon>,
    tree: RTree<GeomWithData<Rectangle<[f64; 2]>, u32>>,
}

fn valid(lon: f64, lat: f64) -> bool {
    lon.is_finite() && lat.is_finite() && (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)
}

/// A CSV error without the data it quotes (an invalid UTF-8 error carries the bytes).
fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".to_string(),
        csv::ErrorKind::Io(_) => "cannot be read".to_string(),
        _ => "not CSV".to_string(),
    }
}

/// Read a CSV with a header row; returns (header, rows).
fn read_csv(reader: impl Read, what: &str) -> Result<(Vec<String>, Vec<csv::StringRecord>), LayerError> {
    let mut r = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(reader);
    let header: Vec<String> = r
        .headers()
        .map_err(|e| LayerError(format!("{what}: cannot read the header row: {}", csv_error(&e))))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let mut rows = Vec::new();
    for (i, rec) in r.records().enumerate() {
        rows.push(rec.map_err(|e| LayerError(format!("{what}: row {}: {}", i + 2, csv_error(&e))))?);
    }
    Ok((header, rows))
}

impl PolygonLayer {
    /// A layer from CSV with a WKT column (named `wkt`, `geometry` or `geom`); every other column
    /// is an attribute.
    pub fn from_csv(reader: impl Read, what: &str) -> Result<Self, LayerError> {
        let (header, rows) = read_csv(reader, what)?;
        let wkt_col = header
            .iter()
            .position(|h| matches!(h.as_str(), "wkt" | "geometry" | "geom" | "the_geom"))
            .ok_or_else(|| LayerError(format!("{what}: no WKT column (wkt, geometry or geom) among its {} header columns", header.len())))?;
        let columns: Vec<String> = header.iter().enumerate().filter(|(i, _)| *i != wkt_col).map(|(_, h)| h.clone()).collect();
        let mut layer_rows = Vec::with_capacity(rows.len());
        for (i, rec) in rows.iter().enumerate() {
            let text = rec.get(wkt_col).unwrap_or_default();
            // The message says what is wrong, never what the row holds: a layer pointed at
            // another file must not print that file.
            let geom = parse_polygons(text).map_err(|e| LayerError(format!("{what}: row {}: {e}", i + 2)))?;
            let values = rec
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != wkt_col)
                .map(|(_, v)| if v.is_empty() { None } else { Some(v.to_string()) })
                .collect();
            layer_rows.push((Region { values }, geom));
        }
        Ok(Self::new(columns, layer_rows))
    }

    /// A layer from a file in any format Bowman reads (see [`super::formats`]).
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Self, LayerError> {
        if LayerFormat::sniff(bytes) == LayerFormat::Csv {
            return Self::from_csv(bytes, what);
        }
        let features = read_features(bytes, what)?;
        let mut rows = Vec::with_capacity(features.rows.len());
        for (i, (region, geom)) in features.rows.into_iter().enumerate() {
            let polygons = match geom {
                geo::Geometry::Polygon(p) => MultiPolygon(vec![p]),
                geo::Geometry::MultiPolygon(m) => m,
                other => {
                    return Err(LayerError(format!(
                        "{what}: feature {}: expected a Polygon or MultiPolygon, found {}",
                        i + 1,
                        geometry_kind(&other)
                    )));
                }
            };
            rows.push((region, polygons));
        }
        Ok(Self::new(features.columns, rows))
    }

    pub fn new(columns: Vec<String>, rows: Vec<(Region, MultiPolygon<f64>)>) -> Self {
        let mut regions = Vec::with_capacity(rows.len());
        let mut polygons = Vec::new();
        let mut boxes = Vec::new();
        for (region, geom) in rows {
            let id = regions.len() as u32;
            regions.push(region);
            for p in geom.0 {
                if let Some(r) = p.bounding_rect() {
                    boxes.push(GeomWithData::new(
                        Rectangle::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]),
                        polygons.len() as u32,
                    ));
                    polygons.push((id, p));
                }
            }
        }
        let prepared = polygons.iter().map(|(_, p)| PreparedPolygon::new(p)).collect();
        PolygonLayer { columns, regions, polygons, prepared, tree: RTree::bulk_load(boxes) }
    }

    /// The region containing the point, if any.
    pub fn locate(&self, lon: f64, lat: f64) -> Option<&Region> {
        if !valid(lon, lat) {
            return None;
        }
        let c = Coord { x: lon, y: lat };
        let mut on_boundary: Option<u32> = None;
        for hit in self.tree.locate_in_envelope_intersecting(&AABB::from_point([lon, lat])) {
            let region = &self.polygons[hit.data as usize].0;
            match self.prepared[hit.data as usize].position(c.x, c.y) {
                CoordPos::Inside => return Some(&self.regions[*region as usize]),
                CoordPos::OnBoundary => {
                    on_boundary = Some(on_boundary.map_or(*region, |b| b.min(*region)));
                }
                CoordPos::Outside => {}
            }
        }
        on_boundary.map(|r| &self.regions[r as usize])
    }

    /// The value of attribute `column` of a region.
    pub fn value<'a>(&self, region: &'a Region, column: &str) -> Option<&'a str> {
        let i = self.columns.iter().position(|c| c == column)?;
        region.values.get(i)?.as_deref()
    }
}

/// Parse WKT holding a POLYGON or MULTIPOLYGON.
pub fn parse_polygons(text: &str) -> Result<MultiPolygon<f64>, String> {
    use std::str::FromStr;
    let w = wkt::Wkt::<f64>::from_str(text.trim()).map_err(|_| "the WKT column is not WKT (POLYGON or MULTIPOLYGON text)".to_string())?;
    let g: geo::Geometry<f64> = w.try_into().map_err(|e| format!("not a geometry: {e:?}"))?;
    match g {
        geo::Geometry::Polygon(p) => Ok(MultiPolygon(vec![p])),
        geo::Geometry::MultiPolygon(m) => Ok(m),
        other => Err(format!("expected POLYGON or MULTIPOLYGON, found {}", geometry_kind(&other))),
    }
}

fn geometry_kind(g: &geo::Geometry<f64>) -> &'static str {
    match g {
        geo::Geometry::Point(_) => "POINT",
        geo::Geometry::LineString(_) => "LINESTRING",
        geo::Geometry::MultiPoint(_) => "MULTIPOINT",
        geo::Geometry::MultiLineString(_) => "MULTILINESTRING",
        geo::Geometry::GeometryCollection(_) => "GEOMETRYCOLLECTION",
        geo::Geometry::Polygon(_) => "POLYGON",
        geo::Geometry::MultiPolygon(_) => "MULTIPOLYGON",
        _ => "another geometry",
    }
}

/// ZIP centroids: the nearest one within `max_km` names the city and ZIP of a point.
#[derive(Debug)]
pub struct PointLayer {
    pub columns: Vec<String>,
    rows: Vec<Region>,
    tree: RTree<GeomWithData<[f64; 2], u32>>,
    pub max_km: f64,
}

/// Great-circle distance in km.
pub fn haversine_km(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0088 * a.sqrt().asin()
}

impl PointLayer {
    /// Points from CSV with `latitude` and `longitude` columns (or `lat`/`lon`/`lng`).
    pub fn from_csv(reader: impl Read, what: &str, max_km: f64) -> Result<Self, LayerError> {
        let (header, rows) = read_csv(reader, what)?;
        let find = |names: &[&str]| header.iter().position(|h| names.contains(&h.as_str()));
        let lat = find(&["latitude", "lat"])
            .ok_or_else(|| LayerError(format!("{what}: no latitude column (latitude or lat) among its {} header columns", header.len())))?;
        let lon = find(&["longitude", "lon", "lng"])
            .ok_or_else(|| LayerError(format!("{what}: no longitude column (longitude, lon or lng) among its {} header columns", header.len())))?;
        let columns: Vec<String> = header.iter().enumerate().filter(|(i, _)| *i != lat && *i != lon).map(|(_, h)| h.clone()).collect();
        let mut out = Vec::with_capacity(rows.len());
        for (i, rec) in rows.iter().enumerate() {
            let num = |c: usize| -> Result<f64, LayerError> {
                rec.get(c)
                    .unwrap_or_default()
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| LayerError(format!("{what}: row {}: column {} is not a number", i + 2, c + 1)))
            };
            let (y, x) = (num(lat)?, num(lon)?);
            if !valid(x, y) {
                return Err(LayerError(format!("{what}: row {}: ({x}, {y}) is not a longitude/latitude", i + 2)));
            }
            let values = rec
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != lat && *j != lon)
                .map(|(_, v)| if v.is_empty() { None } else { Some(v.to_string()) })
                .collect();
            out.push((Region { values }, [x, y]));
        }
        Ok(Self::new(columns, out, max_km))
    }

    /// Points from a file in any format Bowman reads: CSV with latitude and longitude columns,
    /// or GeoJSON / GeoParquet Point features.
    pub fn from_bytes(bytes: &[u8], what: &str, max_km: f64) -> Result<Self, LayerError> {
        if LayerFormat::sniff(bytes) == LayerFormat::Csv {
            return Self::from_csv(bytes, what, max_km);
        }
        let features = read_features(bytes, what)?;
        let mut rows = Vec::with_capacity(features.rows.len());
        for (i, (region, geom)) in features.rows.into_iter().enumerate() {
            let geo::Geometry::Point(p) = geom else {
                return Err(LayerError(format!("{what}: feature {}: expected a Point, found {}", i + 1, geometry_kind(&geom))));
            };
            if !valid(p.x(), p.y()) {
                return Err(LayerError(format!("{what}: feature {}: ({}, {}) is not a longitude/latitude", i + 1, p.x(), p.y())));
            }
            rows.push((region, [p.x(), p.y()]));
        }
        Ok(Self::new(features.columns, rows, max_km))
    }

    pub fn new(columns: Vec<String>, rows: Vec<(Region, [f64; 2])>, max_km: f64) -> Self {
        let points = rows.iter().enumerate().map(|(i, (_, p))| GeomWithData::new(*p, i as u32)).collect();
        PointLayer { columns, rows: rows.into_iter().map(|(r, _)| r).collect(), tree: RTree::bulk_load(points), max_km }
    }

    /// The nearest point within `max_km` by great-circle distance; ties go to the point read
    /// first. The R-tree works in degrees, where a degree of longitude shrinks with the
    /// latitude, so: the nearest point by degrees bounds the search radius, and every point
    /// within that radius stretched by 1/cos(latitude) is a candidate.
    pub fn nearest(&self, lon: f64, lat: f64) -> Option<&Region> {
        if !valid(lon, lat) {
            return None;
        }
        let first = self.tree.nearest_neighbor(&[lon, lat])?;
        let (dx, dy) = (first.geom()[0] - lon, first.geom()[1] - lat);
        let d0 = (dx * dx + dy * dy).sqrt();
        // A point d degrees away is at least d * cos(lat') * 111 km away, lat' the larger latitude.
        let cos = (lat.abs() + d0).min(89.9).to_radians().cos();
        if d0 * cos * 110.5 > self.max_km {
            return None;
        }
        let radius = (d0 / cos).min(self.max_km / (110.5 * cos));
        let mut best: Option<(f64, u32)> = None;
        for p in self.tree.locate_within_distance([lon, lat], radius * radius * (1.0 + 1e-9)) {
            let d = haversine_km(lon, lat, p.geom()[0], p.geom()[1]);
            if d <= self.max_km && best.is_none_or(|(bd, bi)| d < bd || (d == bd && p.data < bi)) {
                best = Some((d, p.data));
            }
        }
        best.map(|(_, i)| &self.rows[i as usize])
    }

    pub fn value<'a>(&self, region: &'a Region, column: &str) -> Option<&'a str> {
        let i = self.columns.iter().position(|c| c == column)?;
        region.values.get(i)?.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARES: &str = "name,wkt
left,\"POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))\"
right,\"POLYGON((1 0, 2 0, 2 1, 1 1, 1 0))\"
donut,\"POLYGON((10 10, 14 10, 14 14, 10 14, 10 10), (11 11, 13 11, 13 13, 11 13, 11 11))\"
islands,\"MULTIPOLYGON(((20 20, 21 20, 21 21, 20 21, 20 20)), ((30 30, 31 30, 31 31, 30 31, 30 30)))\"
";

    #[test]
    fn polygons_answer_inside_boundaries_holes_and_multipolygons() {
        let layer = PolygonLayer::from_csv(SQUARES.as_bytes(), "squares").unwrap();
        let name = |x: f64, y: f64| layer.locate(x, y).and_then(|r| layer.value(r, "name")).map(str::to_string);
        assert_eq!(name(0.5, 0.5).as_deref(), Some("left"));
        assert_eq!(name(1.5, 0.5).as_deref(), Some("right"));
        // On the shared border: the region read first, every time.
        assert_eq!(name(1.0, 0.5).as_deref(), Some("left"));
        // A corner on the outer boundary still belongs to the polygon.
        assert_eq!(name(2.0, 1.0).as_deref(), Some("right"));
        // Holes are outside; the ring around them is inside.
        assert_eq!(name(12.0, 12.0), None);
        assert_eq!(name(10.5, 12.0).as_deref(), Some("donut"));
        // Both parts of a multipolygon.
        assert_eq!(name(20.5, 20.5).as_deref(), Some("islands"));
        assert_eq!(name(30.5, 30.5).as_deref(), Some("islands"));
        // Nowhere, and not a coordinate.
        assert_eq!(name(5.0, 5.0), None);
        assert_eq!(name(f64::NAN, 0.5), None);
        assert_eq!(name(0.5, 95.0), None);
        assert_eq!(name(200.0, 0.5), None);
    }

    #[test]
    fn prepared_tests_agree_with_geo() {
        use geo::CoordinatePosition;
        let layer = PolygonLayer::from_csv(SQUARES.as_bytes(), "squares").unwrap();
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..20_000 {
            let (x, y) = (next() * 35.0 - 2.0, next() * 35.0 - 2.0);
            for (i, (_, p)) in layer.polygons.iter().enumerate() {
                assert_eq!(layer.prepared[i].position(x, y), p.coordinate_position(&Coord { x, y }), "({x}, {y})");
            }
        }
        for (x, y) in [(1.0, 0.5), (0.0, 0.0), (11.0, 12.0), (14.0, 14.0), (20.5, 21.0)] {
            for (i, (_, p)) in layer.polygons.iter().enumerate() {
                assert_eq!(layer.prepared[i].position(x, y), p.coordinate_position(&Coord { x, y }), "({x}, {y})");
            }
        }
    }

    /// The squares as GeoJSON and as GeoParquet (WKB) answer exactly as the CSV does.
    #[test]
    fn geojson_and_geoparquet_layers_answer_like_csv() {
        use datafusion::arrow::array::{BinaryArray, RecordBatch, StringArray};
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use std::sync::Arc;
        let csv = PolygonLayer::from_csv(SQUARES.as_bytes(), "squares").unwrap();
        let mut features = Vec::new();
        let (mut names, mut wkbs) = (Vec::new(), Vec::new());
        for (region, (_, p)) in csv.regions.iter().zip(&csv.polygons) {
            // Multipolygon parts are separate polygons of one region in the index; put them back together.
            let name = region.values[0].clone().unwrap();
            if names.contains(&name) {
                continue;
            }
            let parts: Vec<Polygon<f64>> = csv.polygons.iter().filter(|(r, _)| csv.regions[*r as usize] == *region).map(|(_, p)| p.clone()).collect();
            let geom = if parts.len() == 1 { geo::Geometry::Polygon(p.clone()) } else { geo::Geometry::MultiPolygon(MultiPolygon(parts)) };
            features.push(format!(r#"{{"type":"Feature","properties":{{"Name":"{name}","pop":{}}},"geometry":{}}}"#, names.len(), geojson::Geometry::from(&geom).to_string()));
            let mut buf = Vec::new();
            wkb::writer::write_geometry(&mut buf, &geom, &Default::default()).unwrap();
            wkbs.push(buf);
            names.push(name);
        }
        let geojson = format!(r#"{{"type":"FeatureCollection","features":[{}]}}"#, features.join(","));
        let schema = Arc::new(Schema::new(vec![Field::new("name", DataType::Utf8, true), Field::new("geometry", DataType::Binary, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(names.clone())),
                Arc::new(BinaryArray::from(wkbs.iter().map(|w| Some(w.as_slice())).collect::<Vec<_>>())),
            ],
        )
        .unwrap();
        let mut parquet = Vec::new();
        let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(&mut parquet, schema, None).unwrap();
        w.append_key_value_metadata(datafusion::parquet::file::metadata::KeyValue::new(
            "geo".into(),
            r#"{"version":"1.1.0","primary_column":"geometry","columns":{"geometry":{"encoding":"WKB","geometry_types":["Polygon","MultiPolygon"]}}}"#.to_string(),
        ));
        w.write(&batch).unwrap();
        w.close().unwrap();
        let from_json = PolygonLayer::from_bytes(geojson.as_bytes(), "squares.geojson").unwrap();
        let from_parquet = PolygonLayer::from_bytes(&parquet, "squares.parquet").unwrap();
        assert_eq!(from_json.columns, ["name", "pop"]);
        for (x, y) in [(0.5, 0.5), (1.5, 0.5), (1.0, 0.5), (12.0, 12.0), (10.5, 12.0), (20.5, 20.5), (30.5, 30.5), (5.0, 5.0)] {
            let want = csv.locate(x, y).and_then(|r| csv.value(r, "name"));
            assert_eq!(from_json.locate(x, y).and_then(|r| from_json.value(r, "name")), want, "GeoJSON at ({x}, {y})");
            assert_eq!(from_parquet.locate(x, y).and_then(|r| from_parquet.value(r, "name")), want, "GeoParquet at ({x}, {y})");
        }
        assert_eq!(from_json.locate(30.5, 30.5).and_then(|r| from_json.value(r, "pop")), Some("3"));
        // Points as GeoJSON; a polygon where a point belongs says which feature.
        let zips = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"zip":"48206","city":"Detroit"},"geometry":{"type":"Point","coordinates":[-83.108,42.375]}}]}"#;
        let layer = PointLayer::from_bytes(zips.as_bytes(), "zips", 30.0).unwrap();
        assert_eq!(layer.nearest(-83.1186093, 42.3677203).and_then(|r| layer.value(r, "zip")), Some("48206"));
        let e = PointLayer::from_bytes(geojson.as_bytes(), "squares", 30.0).unwrap_err();
        assert!(e.0.contains("feature 1") && e.0.contains("POLYGON"), "{e}");
    }

    #[test]
    fn bad_layers_say_which_row() {
        let e = PolygonLayer::from_csv("name,wkt\na,\"POINT(1 2)\"\n".as_bytes(), "l").unwrap_err();
        assert!(e.0.contains("row 2") && e.0.contains("POINT"), "{e}");
        let e = PolygonLayer::from_csv("name,shape\na,b\n".as_bytes(), "l").unwrap_err();
        assert!(e.0.contains("no WKT column"), "{e}");
    }

    #[test]
    fn nearest_point_within_distance() {
        let zips = "zip,city,latitude,longitude\n48206,Detroit,42.3750,-83.1080\n48201,Detroit,42.3470,-83.0600\n10001,New York,40.7506,-73.9972\n";
        let layer = PointLayer::from_csv(zips.as_bytes(), "zips", 30.0).unwrap();
        let zip = |x: f64, y: f64| layer.nearest(x, y).and_then(|r| layer.value(r, "zip")).map(str::to_string);
        assert_eq!(zip(-83.1186093, 42.3677203).as_deref(), Some("48206"));
        assert_eq!(zip(-73.99, 40.75).as_deref(), Some("10001"));
        // More than 30 km from every centroid.
        assert_eq!(zip(-100.0, 40.0), None);
        assert!((haversine_km(-73.9857, 40.7484, -0.1278, 51.5074) - 5570.0).abs() < 15.0);
        // Far north, a point further east by degrees can be nearer by km.
        let north = "zip,city,latitude,longitude\n1,EastFar,70.0,20.9\n2,NorthNear,70.35,20.0\n";
        let layer = PointLayer::from_csv(north.as_bytes(), "n", 100.0).unwrap();
        let city = layer.nearest(20.0, 70.0).and_then(|r| layer.value(r, "city")).map(str::to_string);
        // 0.9 degrees of longitude at 70N is about 34 km; 0.35 degrees of latitude about 39 km.
        assert_eq!(city.as_deref(), Some("EastFar"));
    }
}
