//! Layer files: CSV with a WKT column (or latitude/longitude columns for points), GeoJSON
//! (a FeatureCollection, a Feature or a bare geometry) and GeoParquet (a WKB geometry column,
//! as written by GeoPandas, GDAL, DuckDB or Sedona). The format is told by the file's first
//! bytes, so a layer's location needs no particular extension.
//!
//! Coordinates must be longitude/latitude (GeoJSON's and GeoParquet's default CRS, OGC:CRS84);
//! a GeoParquet file that declares another CRS is refused rather than answered wrongly.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use geo::Geometry;
use geo_traits::to_geo::ToGeoGeometry;
use serde_json::Value;

use super::index::{LayerError, Region};

/// How a layer file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerFormat {
    Csv,
    GeoJson,
    GeoParquet,
}

impl LayerFormat {
    /// Parquet files start with `PAR1`; JSON text with `{` (after white space or a BOM).
    pub fn sniff(bytes: &[u8]) -> Self {
        if bytes.starts_with(b"PAR1") {
            return LayerFormat::GeoParquet;
        }
        let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        match text.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => LayerFormat::GeoJson,
            _ => LayerFormat::Csv,
        }
    }
}

/// Features read from a GeoJSON or GeoParquet file: attribute names and, per feature, the
/// attribute values and the geometry.
#[derive(Debug, Default)]
pub struct Features {
    pub columns: Vec<String>,
    pub rows: Vec<(Region, Geometry<f64>)>,
}

/// Read the features of a GeoJSON or GeoParquet layer.
pub fn read_features(bytes: &[u8], what: &str) -> Result<Features, LayerError> {
    match LayerFormat::sniff(bytes) {
        LayerFormat::GeoJson => read_geojson(bytes, what),
        LayerFormat::GeoParquet => read_geoparquet(bytes, what),
        LayerFormat::Csv => Err(LayerError(format!("{what}: CSV, not GeoJSON or GeoParquet"))),
    }
}

/// A property value as attribute text: strings as they are, other values as JSON text.
fn property_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn read_geojson(bytes: &[u8], what: &str) -> Result<Features, LayerError> {
    let text = std::str::from_utf8(bytes).map_err(|e| LayerError(format!("{what}: GeoJSON is not UTF-8: {e}")))?;
    let parsed: geojson::GeoJson = text
        .trim_start_matches('\u{feff}')
        .parse()
        .map_err(|e| LayerError(format!("{what}: not GeoJSON: {e}")))?;
    let features = match parsed {
        geojson::GeoJson::FeatureCollection(fc) => fc.features,
        geojson::GeoJson::Feature(f) => vec![f],
        geojson::GeoJson::Geometry(g) => vec![geojson::Feature { geometry: Some(g), ..Default::default() }],
    };
    // Attribute names in the order features first use them; names are case-insensitive as in CSV.
    let mut out = Features::default();
    let mut index: HashMap<String, usize> = HashMap::new();
    for f in &features {
        for key in f.properties.iter().flat_map(|p| p.keys()) {
            let key = key.to_ascii_lowercase();
            if !index.contains_key(&key) {
                index.insert(key.clone(), out.columns.len());
                out.columns.push(key);
            }
        }
    }
    for (i, f) in features.iter().enumerate() {
        let Some(g) = &f.geometry else {
            return Err(LayerError(format!("{what}: feature {} has no geometry", i + 1)));
        };
        let geom = Geometry::<f64>::try_from(&g.value).map_err(|e| LayerError(format!("{what}: feature {}: {e}", i + 1)))?;
        let mut values = vec![None; out.columns.len()];
        for (k, v) in f.properties.iter().flatten() {
            values[index[&k.to_ascii_lowercase()]] = property_text(v);
        }
        out.rows.push((Region { values }, geom));
    }
    Ok(out)
}

/// The geometry column of a GeoParquet file and whether its CRS is longitude/latitude, from
/// the `geo` metadata (GeoParquet 1.x); files without it may still have a WKB column named
/// `geometry`, `geom` or `wkb`.
fn geoparquet_column(meta: Option<&str>, names: &[String], what: &str) -> Result<String, LayerError> {
    if let Some(text) = meta {
        let geo: Value = serde_json::from_str(text).map_err(|e| LayerError(format!("{what}: bad GeoParquet metadata: {e}")))?;
        let primary = geo["primary_column"].as_str().unwrap_or("geometry").to_string();
        let column = &geo["columns"][&primary];
        if let Some(encoding) = column["encoding"].as_str() {
            if !encoding.eq_ignore_ascii_case("wkb") {
                return Err(LayerError(format!(
                    "{what}: geometry column {primary} is encoded as {encoding}; Bowman reads WKB-encoded GeoParquet (write it with geometry_encoding='WKB')"
                )));
            }
        }
        match &column["crs"] {
            Value::Null => {}
            crs => {
                let id = &crs["id"];
                let authority = id["authority"].as_str().unwrap_or_default();
                let code = match &id["code"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let lon_lat = (authority.eq_ignore_ascii_case("OGC") && code.eq_ignore_ascii_case("CRS84"))
                    || (authority.eq_ignore_ascii_case("EPSG") && code == "4326");
                if !lon_lat {
                    return Err(LayerError(format!(
                        "{what}: geometry column {primary} is in CRS {authority}:{code}; layers must be longitude/latitude (OGC:CRS84 or EPSG:4326)"
                    )));
                }
            }
        }
        return Ok(primary);
    }
    names
        .iter()
        .find(|n| matches!(n.to_ascii_lowercase().as_str(), "geometry" | "geom" | "wkb" | "the_geom"))
        .cloned()
        .ok_or_else(|| LayerError(format!("{what}: no GeoParquet metadata and no geometry column (geometry, geom, wkb) among its {} columns", names.len())))
}

fn read_geoparquet(bytes: &[u8], what: &str) -> Result<Features, LayerError> {
    let err = |e: &dyn std::fmt::Display| LayerError(format!("{what}: {e}"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(bytes)).map_err(|e| err(&e))?;
    let meta = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == "geo").and_then(|k| k.value.clone()));
    let names: Vec<String> = builder.schema().fields().iter().map(|f| f.name().clone()).collect();
    let geometry = geoparquet_column(meta.as_deref(), &names, what)?;
    let geom_index = names.iter().position(|n| *n == geometry).ok_or_else(|| err(&format!("no column {geometry}")))?;
    let mut out = Features { columns: names.iter().filter(|n| **n != geometry).map(|n| n.to_ascii_lowercase()).collect(), rows: vec![] };
    for batch in builder.build().map_err(|e| err(&e))? {
        let batch = batch.map_err(|e| err(&e))?;
        // Attributes as text; a column that has no text form (lists, structs) is left out.
        let attrs: Vec<Option<datafusion::arrow::array::ArrayRef>> = batch
            .columns()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != geom_index)
            .map(|(_, c)| cast(c, &DataType::Utf8).ok())
            .collect();
        let wkb = cast(batch.column(geom_index), &DataType::LargeBinary)
            .map_err(|_| err(&format!("geometry column {geometry} is not binary WKB")))?;
        let wkb = wkb.as_binary::<i64>();
        for row in 0..batch.num_rows() {
            let n = out.rows.len() + 1;
            if wkb.is_null(row) {
                return Err(err(&format!("row {n} has no geometry")));
            }
            let geom = wkb::reader::read_wkb(wkb.value(row)).map_err(|e| err(&format!("row {n}: not WKB: {e}")))?.to_geometry();
            let values = attrs
                .iter()
                .map(|a| {
                    let a = a.as_ref()?.as_string::<i32>();
                    (!a.is_null(row) && !a.value(row).is_empty()).then(|| a.value(row).to_string())
                })
                .collect();
            out.rows.push((Region { values }, geom));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_their_first_bytes() {
        assert_eq!(LayerFormat::sniff(b"PAR1\x15\x04"), LayerFormat::GeoParquet);
        assert_eq!(LayerFormat::sniff(b"\n  {\"type\": \"FeatureCollection\"}"), LayerFormat::GeoJson);
        assert_eq!(LayerFormat::sniff(b"\xEF\xBB\xBF{}"), LayerFormat::GeoJson);
        assert_eq!(LayerFormat::sniff(b"name,wkt\n"), LayerFormat::Csv);
    }

    #[test]
    fn geoparquet_crs_must_be_lon_lat() {
        let names = vec!["name".to_string(), "geometry".to_string()];
        let meta = r#"{"version":"1.1.0","primary_column":"geometry","columns":{"geometry":{"encoding":"WKB","geometry_types":[]}}}"#;
        assert_eq!(geoparquet_column(Some(meta), &names, "l").unwrap(), "geometry");
        let meta = r#"{"primary_column":"g","columns":{"g":{"encoding":"WKB","crs":{"id":{"authority":"EPSG","code":4326}}}}}"#;
        assert_eq!(geoparquet_column(Some(meta), &names, "l").unwrap(), "g");
        let meta = r#"{"primary_column":"g","columns":{"g":{"encoding":"WKB","crs":{"id":{"authority":"EPSG","code":3857}}}}}"#;
        assert!(geoparquet_column(Some(meta), &names, "l").unwrap_err().0.contains("EPSG:3857"));
        let meta = r#"{"primary_column":"g","columns":{"g":{"encoding":"polygon"}}}"#;
        assert!(geoparquet_column(Some(meta), &names, "l").unwrap_err().0.contains("WKB"));
        assert_eq!(geoparquet_column(None, &names, "l").unwrap(), "geometry");
    }
}
