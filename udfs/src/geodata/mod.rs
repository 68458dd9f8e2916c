//! `geodata(longitude, latitude)`: where a point is — country, state, county, city, ZIP and DMA —
//! as one struct, vectorized over Arrow arrays.
//!
//! Layers are data: polygon layers (countries, states, counties, DMAs, any user layer) are
//! answered by point-in-polygon tests ([`index::PolygonLayer`]); city and ZIP come from the
//! nearest ZIP centroid within `zip_max_km` ([`index::PointLayer`]). A [`GeoIndex`] is built once
//! when layers are (re)loaded and shared by every session through a [`GeodataFunc`]; reloading
//! swaps the whole index at once, so a query sees the old layers or the new ones, never a mix.

pub mod formats;
pub mod index;

use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder, StructArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Float64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use index::{PointLayer, PolygonLayer, Region};

/// The struct fields `geodata` returns, in order.
pub const FIELDS: [&str; 9] =
    ["country", "country_code", "state", "state_code", "county", "city", "zip_code", "dma_name", "dma_number"];

/// The loaded layers. Any may be missing; its fields are then NULL.
#[derive(Debug, Default)]
pub struct GeoIndex {
    pub countries: Option<PolygonLayer>,
    pub states: Option<PolygonLayer>,
    pub counties: Option<PolygonLayer>,
    pub dma: Option<PolygonLayer>,
    pub zips: Option<PointLayer>,
}

/// USPS codes by state FIPS code (Census Bureau), for layers that carry only the FIPS code.
const STATE_CODES: &[(&str, &str)] = &[
    ("01", "AL"), ("02", "AK"), ("04", "AZ"), ("05", "AR"), ("06", "CA"), ("08", "CO"), ("09", "CT"), ("10", "DE"),
    ("11", "DC"), ("12", "FL"), ("13", "GA"), ("15", "HI"), ("16", "ID"), ("17", "IL"), ("18", "IN"), ("19", "IA"),
    ("20", "KS"), ("21", "KY"), ("22", "LA"), ("23", "ME"), ("24", "MD"), ("25", "MA"), ("26", "MI"), ("27", "MN"),
    ("28", "MS"), ("29", "MO"), ("30", "MT"), ("31", "NE"), ("32", "NV"), ("33", "NH"), ("34", "NJ"), ("35", "NM"),
    ("36", "NY"), ("37", "NC"), ("38", "ND"), ("39", "OH"), ("40", "OK"), ("41", "OR"), ("42", "PA"), ("44", "RI"),
    ("45", "SC"), ("46", "SD"), ("47", "TN"), ("48", "TX"), ("49", "UT"), ("50", "VT"), ("51", "VA"), ("53", "WA"),
    ("54", "WV"), ("55", "WI"), ("56", "WY"), ("60", "AS"), ("66", "GU"), ("69", "MP"), ("72", "PR"), ("78", "VI"),
];

/// The first attribute of `region` among `names` that has a value.
fn pick<'a>(layer: &PolygonLayer, region: &'a Region, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| layer.value(region, n))
}

/// One point's answer, field by field (see [`FIELDS`]).
pub type Answer<'a> = [Option<&'a str>; 9];

impl GeoIndex {
    pub fn lookup(&self, lon: f64, lat: f64) -> Answer<'_> {
        let mut out: Answer<'_> = [None; 9];
        let zip = self.zips.as_ref().and_then(|z| z.nearest(lon, lat).map(|r| (z, r)));
        if let Some(l) = &self.countries {
            if let Some(r) = l.locate(lon, lat) {
                out[0] = pick(l, r, &["country_name", "name", "country", "admin"]);
                out[1] = pick(l, r, &["country_code", "iso_a2", "iso2", "iso_alpha2"]);
            }
        }
        if let Some(l) = &self.states {
            if let Some(r) = l.locate(lon, lat) {
                out[2] = pick(l, r, &["state_name", "name", "state"]);
                out[3] = pick(l, r, &["state_code", "stusps", "postal"]).or_else(|| {
                    let fips = pick(l, r, &["state_fips", "statefp", "fips"])?;
                    STATE_CODES.iter().find(|(f, _)| *f == fips).map(|(_, c)| *c)
                });
            }
        }
        if let Some(l) = &self.counties {
            if let Some(r) = l.locate(lon, lat) {
                out[4] = pick(l, r, &["county_name", "name", "county"]);
            }
        }
        if let Some((z, r)) = zip {
            out[5] = z.value(r, "city");
            out[6] = z.value(r, "zip").or_else(|| z.value(r, "zip_code"));
            // Country code from the ZIP layer when the country layer has none (ISO numeric only).
            if out[1].is_none() && out[0].is_some() {
                out[1] = z.value(r, "country");
            }
        }
        if let Some(l) = &self.dma {
            if let Some(r) = l.locate(lon, lat) {
                out[7] = pick(l, r, &["dma_name", "name", "dma"]);
                out[8] = pick(l, r, &["dma_number", "dma_code", "dma_id", "number", "code"]);
            }
        }
        out
    }
}

/// The return type of `geodata`.
pub fn return_type() -> DataType {
    DataType::Struct(Fields::from(FIELDS.iter().map(|f| Field::new(*f, DataType::Utf8, true)).collect::<Vec<_>>()))
}

/// The `geodata` scalar function over a shared, swappable index.
#[derive(Debug)]
pub struct GeodataFunc {
    name: String,
    signature: Signature,
    index: Arc<RwLock<Arc<GeoIndex>>>,
}

impl PartialEq for GeodataFunc {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.index, &other.index)
    }
}

impl Eq for GeodataFunc {}

impl std::hash::Hash for GeodataFunc {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl GeodataFunc {
    pub fn new(name: impl Into<String>, index: Arc<RwLock<Arc<GeoIndex>>>) -> Self {
        GeodataFunc {
            name: name.into(),
            // Immutable for a given index, so a query that reads several fields computes it once.
            signature: Signature::uniform(2, vec![DataType::Float64], Volatility::Immutable),
            index,
        }
    }
}

/// Answer every row of two coordinate arrays; a NULL coordinate gives a NULL struct.
pub fn evaluate(index: &GeoIndex, lon: &ArrayRef, lat: &ArrayRef) -> Result<ArrayRef> {
    let lon = cast(lon, &DataType::Float64)?;
    let lat = cast(lat, &DataType::Float64)?;
    let (lon, lat) = (lon.as_primitive::<Float64Type>(), lat.as_primitive::<Float64Type>());
    let n = lon.len();
    let mut builders: Vec<StringBuilder> = (0..FIELDS.len()).map(|_| StringBuilder::with_capacity(n, n * 8)).collect();
    let mut valid = Vec::with_capacity(n);
    for i in 0..n {
        if lon.is_null(i) || lat.is_null(i) {
            valid.push(false);
            builders.iter_mut().for_each(|b| b.append_null());
            continue;
        }
        valid.push(true);
        let answer = index.lookup(lon.value(i), lat.value(i));
        for (b, v) in builders.iter_mut().zip(answer) {
            b.append_option(v);
        }
    }
    let DataType::Struct(fields) = return_type() else { unreachable!("a struct") };
    let columns: Vec<ArrayRef> = builders.into_iter().map(|mut b| Arc::new(b.finish()) as ArrayRef).collect();
    Ok(Arc::new(StructArray::try_new(fields, columns, Some(NullBuffer::from(valid)))?))
}

impl ScalarUDFImpl for GeodataFunc {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(return_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let index = self.index.read().expect("geodata index").clone();
        Ok(ColumnarValue::Array(evaluate(&index, &arrays[0], &arrays[1])?))
    }
}
