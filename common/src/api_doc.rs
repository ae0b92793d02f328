//! What the services' OpenAPI documents share: the problem document every error is answered
//! with (so a route's description names an error's status and meaning, and this module gives
//! it its body), the credentials routes name, the responses every route can give whatever its
//! handler says, and the assembling of the public and the internal document from the
//! services' parts. Each service describes its own routes next to its handlers (utoipa's
//! `path` attribute) and builds its router from the same description, so a route and its
//! description cannot part.

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder, Ref,
    RefOr,
};

use crate::problem::{PROBLEM_JSON, Problem};

/// A meter's own token (`iot-demo token <meter_id>`, or the one provisioning returned), as
/// `Authorization: Bearer`.
pub const METER_TOKEN: &str = "meter_token";
/// The analyst token (`IOT_ANALYST_TOKEN`), as `Authorization: Bearer`.
pub const ANALYST_TOKEN: &str = "analyst_token";

/// Statuses any route can answer before or around its handler: the listener's request
/// timeout (408) and its deadline for the answer (503). Added to every operation, so the
/// documents declare every status a client can see.
const EVERY_ROUTE: [(&str, &str); 2] = [
    (
        "408",
        "The request did not arrive within the listener's request timeout.",
    ),
    (
        "503",
        "The service is at capacity, a store or bus it needs does not answer, or the answer \
         missed the listener's deadline; `Retry-After` says when to try again.",
    ),
];

/// One of the two documents: its title and what it is for, and the services' parts.
pub fn document(
    title: &str,
    description: &str,
    parts: impl IntoIterator<Item = OpenApi>,
) -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title(title)
                .version("1")
                .description(Some(description))
                .license(Some(LicenseBuilder::new().name("Apache-2.0").identifier(Some("Apache-2.0")).build())),
        )
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme(METER_TOKEN, bearer("A meter's own token, as issued by `iot-demo token <meter_id>` or by provisioning."))
                .security_scheme(ANALYST_TOKEN, bearer("The deployment's analyst token (`IOT_ANALYST_TOKEN`)."))
                .build(),
        ))
        .build();
    for part in parts {
        doc.merge(part);
    }
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            let responses = &mut op.responses.responses;
            for (status, text) in EVERY_ROUTE {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::T(ResponseBuilder::new().description(text).build()));
            }
            // Every error is a problem document, whatever the route.
            for (status, response) in responses.iter_mut() {
                if let RefOr::T(r) = response
                    && status.starts_with(['4', '5'])
                {
                    *response = problem(&r.description);
                }
            }
        }
    }
    if let Some(components) = doc.components.as_mut() {
        components.schemas.insert(
            "Problem".into(),
            <Problem as utoipa::PartialSchema>::schema(),
        );
    }
    doc
}

fn bearer(description: &str) -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(description))
            .build(),
    )
}

/// A response whose body is a problem document.
fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// A document as the committed copy holds it: pretty JSON ending in a newline.
pub fn to_json(doc: &OpenApi) -> String {
    let mut text = doc.to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}
