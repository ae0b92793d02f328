//! The map's geometry, computed once from the region boundaries: each region as an SVG path
//! in an equirectangular projection scaled by cos(latitude) at the map's centre (true shape
//! at London's latitude, where a degree of longitude is 0.62 of a degree of latitude), and
//! which regions border which.

use geo::Intersects;
use iot_common::domain::RegionCode;
use iot_common::regions::Regions;
use serde_json::{Value, json};

/// Width of the map's SVG viewBox; the height follows from the regions' extent.
pub const MAP_WIDTH: f64 = 800.0;

#[derive(Debug, Clone)]
pub struct Shape {
    pub code: RegionCode,
    pub name: String,
    /// SVG path data.
    pub d: String,
    /// Neighbouring region codes, by name.
    pub neighbours: Vec<RegionCode>,
}

#[derive(Debug, Clone)]
pub struct MapGeometry {
    pub width: f64,
    pub height: f64,
    pub shapes: Vec<Shape>,
    /// Each region's GeoJSON geometry, in region order, for the API.
    pub geojson: Vec<String>,
}

impl MapGeometry {
    pub fn new(regions: &Regions) -> Self {
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for r in regions.iter() {
            x0 = x0.min(r.bbox.min().x);
            y0 = y0.min(r.bbox.min().y);
            x1 = x1.max(r.bbox.max().x);
            y1 = y1.max(r.bbox.max().y);
        }
        let k = ((y0 + y1) / 2.0).to_radians().cos();
        let scale = MAP_WIDTH / ((x1 - x0) * k).max(1e-9);
        let height = ((y1 - y0) * scale).ceil();
        let project = |lon: f64, lat: f64| ((lon - x0) * k * scale, (y1 - lat) * scale);
        let all: Vec<_> = regions.iter().collect();
        let shapes = all
            .iter()
            .map(|r| {
                let mut d = String::new();
                for poly in &r.boundary.0 {
                    for ring in std::iter::once(poly.exterior()).chain(poly.interiors()) {
                        for (i, c) in ring.0.iter().enumerate() {
                            let (x, y) = project(c.x, c.y);
                            d.push(if i == 0 { 'M' } else { 'L' });
                            d.push_str(&format!("{x:.1},{y:.1}"));
                        }
                        d.push('Z');
                    }
                }
                let mut neighbours: Vec<(String, RegionCode)> = all
                    .iter()
                    .filter(|o| o.code != r.code && touches(r, o))
                    .map(|o| (o.name.clone(), o.code.clone()))
                    .collect();
                neighbours.sort();
                Shape {
                    code: r.code.clone(),
                    name: r.name.clone(),
                    d,
                    neighbours: neighbours.into_iter().map(|(_, c)| c).collect(),
                }
            })
            .collect();
        Self {
            width: MAP_WIDTH,
            height,
            shapes,
            geojson: all.iter().map(|r| geometry_json(r)).collect(),
        }
    }

    pub fn shape(&self, code: &str) -> Option<&Shape> {
        self.shapes.iter().find(|s| s.code == code)
    }
}

/// Each region's GeoJSON geometry, serialised once: it never changes while the process runs.
pub fn geometry_json(r: &iot_common::regions::Region) -> String {
    let ring = |l: &geo::LineString<f64>| l.0.iter().map(|c| json!([c.x, c.y])).collect::<Vec<_>>();
    let polygons: Vec<Value> = r
        .boundary
        .0
        .iter()
        .map(|poly| {
            let mut rings = vec![json!(ring(poly.exterior()))];
            rings.extend(poly.interiors().iter().map(|i| json!(ring(i))));
            json!(rings)
        })
        .collect();
    json!({"type": "MultiPolygon", "coordinates": polygons}).to_string()
}

/// Boundaries that meet (simplified boundaries may overlap or leave hairline gaps, so the
/// test is on slightly grown bounding boxes first, then the polygons or a near vertex).
fn touches(a: &iot_common::regions::Region, b: &iot_common::regions::Region) -> bool {
    let eps = 0.002;
    let (am, ax) = (a.bbox.min(), a.bbox.max());
    let (bm, bx) = (b.bbox.min(), b.bbox.max());
    if am.x - eps > bx.x || bm.x - eps > ax.x || am.y - eps > bx.y || bm.y - eps > ax.y {
        return false;
    }
    if a.boundary.intersects(&b.boundary) {
        return true;
    }
    let near = |p: &geo::Coord<f64>| {
        b.boundary
            .0
            .iter()
            .flat_map(|poly| poly.exterior().0.iter())
            .any(|q| (p.x - q.x).abs() < eps && (p.y - q.y).abs() < eps)
    };
    a.boundary
        .0
        .iter()
        .flat_map(|poly| poly.exterior().0.iter())
        .any(near)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn london_projects_to_33_shapes_with_neighbours() {
        let regions = Regions::london().unwrap_or_else(|e| panic!("{e}"));
        let g = MapGeometry::new(&regions);
        assert_eq!(g.shapes.len(), 33);
        assert!(g.height > 500.0 && g.height < 700.0, "height {}", g.height);
        let city = g.shape("E09000001").unwrap_or_else(|| panic!("no City"));
        // The City borders Westminster, Camden, Islington, Hackney, Tower Hamlets, Southwark
        // and Lambeth (across the river).
        for n in [
            "E09000033",
            "E09000007",
            "E09000019",
            "E09000012",
            "E09000030",
        ] {
            assert!(
                city.neighbours.iter().any(|c| c == n),
                "{n} in {:?}",
                city.neighbours
            );
        }
        assert!(
            !city.neighbours.iter().any(|c| c == "E09000016"),
            "not Havering"
        );
        let total: usize = g.shapes.iter().map(|s| s.d.len()).sum();
        assert!(total < 120_000, "path data {total} bytes");
    }
}
