//! Region boundaries: loaded from a GeoJSON FeatureCollection, used to place meters in a
//! region by point-in-polygon. The default set is London's 33 boroughs, embedded in the binary.

use crate::domain::RegionCode;
use std::path::Path;

use geo::{BoundingRect, Contains, MultiPolygon, Point, Rect};

/// The default region file: London's 33 boroughs (Open Government Licence v3.0; the
/// attribution travels inside the file and is shown by the services).
pub const LONDON_BOROUGHS: &str = include_str!("../../data/london_boroughs.geojson");

#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error("cannot read region file {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("region file is not a GeoJSON FeatureCollection: {0}")]
    Parse(String),
    #[error("feature {index}: {reason}")]
    Feature { index: usize, reason: String },
    #[error("region file has no regions")]
    Empty,
    #[error("region code `{0}` appears twice")]
    Duplicate(String),
}

/// One region: its code (a GSS code such as `E09000001` for London), name and boundary.
#[derive(Debug, Clone)]
pub struct Region {
    pub code: RegionCode,
    pub name: String,
    pub boundary: MultiPolygon<f64>,
    pub bbox: Rect<f64>,
}

impl Region {
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        let p = Point::new(lon, lat);
        self.bbox.contains(&p) && self.boundary.contains(&p)
    }
}

/// A set of regions, in file order.
#[derive(Debug, Clone)]
pub struct Regions {
    regions: Vec<Region>,
    attribution: Option<String>,
}

impl Regions {
    /// The embedded London boroughs.
    pub fn london() -> Result<Self, RegionError> {
        Self::from_geojson(LONDON_BOROUGHS)
    }

    /// The embedded default when `path` is `None`, else the file at `path`.
    pub fn load(path: Option<&Path>) -> Result<Self, RegionError> {
        match path {
            None => Self::london(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| RegionError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Self::from_geojson(&text)
            }
        }
    }

    /// Parses a FeatureCollection whose features carry `code` (or a feature `id`) and
    /// `name` properties and a Polygon or MultiPolygon geometry in WGS84 lon/lat.
    pub fn from_geojson(text: &str) -> Result<Self, RegionError> {
        let fc: geojson::FeatureCollection = text
            .parse()
            .map_err(|e: geojson::Error| RegionError::Parse(e.to_string()))?;
        let attribution = fc
            .foreign_members
            .as_ref()
            .and_then(|m| m.get("attribution"))
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let mut regions: Vec<Region> = Vec::with_capacity(fc.features.len());
        for (index, f) in fc.features.into_iter().enumerate() {
            let bad = |reason: &str| RegionError::Feature {
                index,
                reason: reason.to_owned(),
            };
            let code = f
                .property("code")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .or_else(|| match &f.id {
                    Some(geojson::feature::Id::String(s)) => Some(s.clone()),
                    Some(geojson::feature::Id::Number(n)) => Some(n.to_string()),
                    None => None,
                })
                .ok_or_else(|| bad("has no `code` property or id"))?;
            let code = RegionCode::parse(code).map_err(|e| bad(&format!("code {e}")))?;
            let name = f
                .property("name")
                .and_then(|v| v.as_str())
                .unwrap_or(&code)
                .to_owned();
            let geometry = f.geometry.ok_or_else(|| bad("has no geometry"))?;
            let boundary = match geo::Geometry::<f64>::try_from(geometry) {
                Ok(geo::Geometry::Polygon(p)) => MultiPolygon::new(vec![p]),
                Ok(geo::Geometry::MultiPolygon(mp)) => mp,
                Ok(_) => return Err(bad("geometry must be a Polygon or MultiPolygon")),
                Err(e) => return Err(bad(&e.to_string())),
            };
            let bbox = boundary
                .bounding_rect()
                .ok_or_else(|| bad("geometry is empty"))?;
            if regions.iter().any(|r| r.code == code) {
                return Err(RegionError::Duplicate(code.to_string()));
            }
            regions.push(Region {
                code,
                name,
                boundary,
                bbox,
            });
        }
        if regions.is_empty() {
            return Err(RegionError::Empty);
        }
        Ok(Self {
            regions,
            attribution,
        })
    }

    /// The region whose boundary contains the point, if any.
    pub fn locate(&self, lat: f64, lon: f64) -> Option<&Region> {
        self.regions.iter().find(|r| r.contains(lat, lon))
    }

    /// A uniformly random `(lat, lon)` that [`Regions::locate`] places in `region`
    /// (simplified boundaries overlap a little, and the first match wins); `None` when
    /// 100,000 tries in the bounding box miss.
    pub fn sample_point<R: rand::Rng + ?Sized>(
        &self,
        region: &Region,
        rng: &mut R,
    ) -> Option<(f64, f64)> {
        use rand::RngExt;
        let (min, max) = (region.bbox.min(), region.bbox.max());
        (0..100_000).find_map(|_| {
            let lon = min.x + (max.x - min.x) * rng.random::<f64>();
            let lat = min.y + (max.y - min.y) * rng.random::<f64>();
            let here = self.locate(lat, lon).is_some_and(|r| r.code == region.code);
            here.then_some((lat, lon))
        })
    }

    pub fn get(&self, code: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.code == code)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Region> {
        self.regions.iter()
    }

    pub fn len(&self) -> usize {
        self.regions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// The data licence text the region file carries, to show wherever the map is shown.
    pub fn attribution(&self) -> Option<&str> {
        self.attribution.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn london() -> Regions {
        Regions::london().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn london_has_33_boroughs_with_gss_codes() {
        let r = london();
        assert_eq!(r.len(), 33);
        assert!(r.iter().all(|x| x.code.starts_with("E09")));
        assert_eq!(
            r.get("E09000001").map(|x| x.name.as_str()),
            Some("City of London")
        );
        assert!(
            r.attribution()
                .is_some_and(|a| a.contains("Open Government Licence"))
        );
    }

    #[test]
    fn locates_well_known_places() {
        let r = london();
        let at = |lat, lon| r.locate(lat, lon).map(|x| x.name.clone());
        // St Paul's Cathedral, Heathrow's central area, Greenwich's Royal Observatory.
        assert_eq!(at(51.5138, -0.0984).as_deref(), Some("City of London"));
        assert_eq!(at(51.4700, -0.4543).as_deref(), Some("Hillingdon"));
        assert_eq!(at(51.4769, -0.0005).as_deref(), Some("Greenwich"));
        // Paris is in no borough.
        assert_eq!(at(48.8566, 2.3522), None);
    }

    #[test]
    fn sampled_points_fall_in_their_region() {
        let r = london();
        let mut rng = rand::rng();
        for region in r.iter() {
            for _ in 0..20 {
                let (lat, lon) = r
                    .sample_point(region, &mut rng)
                    .unwrap_or_else(|| panic!("{}", region.code));
                assert_eq!(
                    r.locate(lat, lon).map(|x| x.code.as_str()),
                    Some(region.code.as_str())
                );
            }
        }
    }

    #[test]
    fn rejects_broken_files_with_a_reason() {
        assert!(matches!(
            Regions::from_geojson("{"),
            Err(RegionError::Parse(_))
        ));
        let empty = r#"{"type":"FeatureCollection","features":[]}"#;
        assert!(matches!(
            Regions::from_geojson(empty),
            Err(RegionError::Empty)
        ));
        let point = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"code":"A"},"geometry":{"type":"Point","coordinates":[0,0]}}]}"#;
        assert!(matches!(
            Regions::from_geojson(point),
            Err(RegionError::Feature { .. })
        ));
    }
}
