//! The platform's two OpenAPI 3.1 documents, which web serves: the public one (ingest and
//! the residents' API, at `/api/v1/openapi.json`) and the internal one (health,
//! provisioning, revocation, the console's JSON, runs and SQL, at `/internal/v1/openapi.json`
//! on the internal listener). Each service describes its routes beside its handlers; the
//! process that builds web hands it the parts web does not serve itself (the meter's ingest,
//! analytics' runs), so both documents describe the whole deployment whichever process
//! serves them. `docs/api/` holds the committed copies a test compares them with.

use iot_common::api_doc::{document, to_json};
use utoipa::openapi::OpenApi;

pub use crate::state::ApiDocs;

impl ApiDocs {
    /// The documents of web's routes with the meter's (`ingest`) and analytics' (`runs`).
    pub fn new(ingest: OpenApi, runs: OpenApi) -> Self {
        let (external, internal) = crate::routes::openapi();
        let public = document(
            "Smart-meter platform: public API",
            "What meters and residents reach through the edge: a meter posts its readings \
             and reads them back; anyone reads the regions' profiles. Errors are RFC 9457 \
             problem documents.",
            [ingest, external],
        );
        let internal = document(
            "Smart-meter platform: internal API",
            "What operators and analysts reach inside the deployment: health and metrics \
             (each service's internal listener), meter provisioning and revocation, the \
             console's data-quality and progress JSON, recompute runs and read-only SQL. \
             Errors are RFC 9457 problem documents.",
            [iot_common::http::health_openapi(), internal, runs],
        );
        Self {
            public: to_json(&public),
            internal: to_json(&internal),
        }
    }
}
