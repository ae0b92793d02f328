//! A household's own page: sign-in with the meter's token, a session that shows that meter
//! and no other, a bearer header for scripts, and revocation ending the session.

use iot_testkit::no_redirect_client;
use std::time::Duration;

use reqwest::StatusCode;

use crate::support::{ANALYST, SendOrPanic, households, sign_in};

#[tokio::test]
async fn a_resident_sees_their_own_meter_against_their_borough_and_no_one_elses() {
    let h = households().await;
    let app = &h.app;
    let c = no_redirect_client();
    let (mine, theirs) = (&h.meters[0], &h.meters[1]);

    let res = c.get(app.ext("/me")).send_or_panic().await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap_or_default();
    assert!(html.contains("action=\"/me/login\""), "a sign-in form");

    let bad = c
        .post(app.ext("/me/login"))
        .form(&[("token", "HOME0001.k1.1.forged")])
        .send_or_panic()
        .await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let bearer = c
        .get(app.ext("/me"))
        .bearer_auth("nope")
        .send_or_panic()
        .await;
    assert_eq!(bearer.status(), StatusCode::UNAUTHORIZED);

    let cookie = sign_in(app, &mine.1).await;
    assert!(
        cookie.starts_with("iot_me=") && cookie.contains("HttpOnly") && cookie.contains("Path=/me"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(&mine.1),
        "the cookie never holds the token"
    );
    let pair = cookie.split(';').next().unwrap_or_default().to_owned();

    let page = c
        .get(app.ext("/me"))
        .header("cookie", &pair)
        .send_or_panic()
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap_or_default();
    assert!(html.contains("meter HOME0001"), "{html}");
    assert!(html.contains("Camden"));
    assert!(
        html.contains("id=\"daily\"") && html.contains("id=\"hourly\""),
        "both charts"
    );
    assert!(
        html.contains("class=\"line borough\""),
        "the borough's curve"
    );
    // The highest of three households' means: above the others, 100 %.
    assert!(html.contains("id=\"percentile\">100 %"), "{html}");
    assert!(
        !html.contains(&theirs.0) && !html.contains(&h.meters[2].0),
        "no other meter's id on the page"
    );

    // A script with the other meter's token sees that meter, not the session's.
    let other = c
        .get(app.ext("/me"))
        .bearer_auth(&theirs.1)
        .send_or_panic()
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(other.contains("meter HOME0002") && !other.contains("HOME0001"));
    assert!(
        other.contains("id=\"percentile\">0 %"),
        "the lowest household"
    );

    // Revoking the meter ends its session at the next request.
    let revoked = c
        .delete(app.int("/internal/v1/meters/HOME0001"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await;
    assert!(revoked.status().is_success(), "{}", revoked.status());
    let after = c
        .get(app.ext("/me"))
        .header("cookie", &pair)
        .send_or_panic()
        .await;
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    let html = after.text().await.unwrap_or_default();
    assert!(html.contains("revoked") && !html.contains("id=\"daily\""));

    let out = c
        .post(app.ext("/me/logout"))
        .header("cookie", &pair)
        .send_or_panic()
        .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    h.app.app.stop(Duration::from_secs(5)).await;
}
