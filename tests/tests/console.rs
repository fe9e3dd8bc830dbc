//! The staff console in a real browser (issue 21): Debian's Chromium, driven through its
//! ChromeDriver, against the console the gateway serves on the test lattice. One walk through a
//! day's work, as an admin then as a clinician, with an accessibility check (axe-core, vendored)
//! on every page, the browser's console log read at the end, and screenshots of the main pages.
//!
//! `cargo xtask test` installs Chromium and ChromeDriver (Debian's packages) and names them in
//! PM_CHROMIUM and PM_CHROMEDRIVER (`local/browser` starts them).
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use browser::fantoccini::Locator;
use serde_json::{json, Value};

/// How long a page may take to show what the test waits for: generous, as the lattice serves
/// other tests at the same time; a wait that runs out fails the test with what it waited for.
const PATIENCE: Duration = Duration::from_secs(30);
const PASSWORD: &str = "correct horse battery";
const AXE: &str = include_str!("../vendor/axe-core/axe.min.js");

/// The browser, and what the test knows about the run.
struct Browser {
    session: browser::Session,
    screenshots: Option<PathBuf>,
    /// The answers the test provokes on purpose (status, path they come from); the browser logs
    /// each as a failed load.
    provoked: Vec<(u16, &'static str)>,
}

impl Browser {
    async fn start() -> Self {
        let session = browser::Session::start(1280, 900)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let screenshots = std::env::var("PM_CONSOLE_SCREENSHOTS")
            .ok()
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var("PM_STACK_DIR")
                    .ok()
                    .map(|dir| PathBuf::from(dir).join("console-screenshots"))
            });
        if let Some(dir) = &screenshots {
            std::fs::create_dir_all(dir).unwrap();
        }
        Browser {
            session,
            screenshots,
            // A patient's billing account is opened a moment after registration: their page may
            // ask before it is (and says so).
            // The test clicks faster than the per-user rate limit (5 requests a second): the
            // console waits as the 429 says and sends the call again.
            provoked: vec![(404, "/api/billing/accounts/"), (429, "/api/")],
        }
    }

    async fn open(&self, path: &str) {
        self.session
            .client
            .goto(&format!("{}{path}", common::gateway()))
            .await
            .unwrap_or_else(|e| panic!("opening {path}: {e}"));
    }

    /// Runs `script` (a function body; `arguments` as WebDriver passes them) in the page.
    async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.session
            .client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `condition` (an expression) is truthy in the page, and returns its value.
    async fn until(&self, what: &str, condition: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        let script = format!("return ({condition}) || null;");
        loop {
            // A navigation in progress makes a script fail; it is simply asked again.
            if let Ok(value) = self.session.client.execute(&script, vec![]).await {
                if !value.is_null() {
                    return value;
                }
            }
            if Instant::now() > deadline {
                let text = self.run("return document.body.innerText;", vec![]).await;
                panic!("waited {PATIENCE:?} for {what} ({condition}); the page said:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text_of(&self, selector: &str) -> String {
        self.until(
            &format!("text in {selector}"),
            &format!("document.querySelector({selector:?})?.innerText.trim()"),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    async fn type_into(&self, selector: &str, text: &str) {
        let field = self
            .session
            .client
            .find(Locator::Css(selector))
            .await
            .unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Sets an input's value as a picker would (date and time inputs take typing in the
    /// browser's locale format; the value property is the same everywhere).
    async fn set(&self, selector: &str, value: &str) {
        self.run(
            "const input = document.querySelector(arguments[0]); input.value = arguments[1]; \
             input.dispatchEvent(new Event('input', {bubbles: true}));",
            vec![json!(selector), json!(value)],
        )
        .await;
    }

    async fn click(&self, selector: &str) {
        self.session
            .client
            .find(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no {selector} to click: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {selector}: {e}"));
    }

    async fn click_text(&self, selector: &str, text: &str) {
        self.until(
            &format!("a {selector} that says {text}"),
            &format!(
                "[...document.querySelectorAll({selector:?})].some(e => e.innerText.trim() === {text:?})"
            ),
        )
        .await;
        for element in self
            .session
            .client
            .find_all(Locator::Css(selector))
            .await
            .unwrap()
        {
            if element.text().await.unwrap_or_default().trim() == text {
                element.click().await.unwrap();
                return;
            }
        }
        panic!("{selector} saying {text} went away before it was clicked");
    }

    /// axe-core on the page as it is: no serious or critical violation.
    async fn accessible(&self, page: &str) {
        let violations = self
            .session
            .client
            .execute_async(
                &format!(
                    "const done = arguments[arguments.length - 1];\n\
                     if (!window.axe) {{ {AXE}\n }}\n\
                     window.axe.run(document, {{ resultTypes: ['violations'] }})\n\
                       .then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')\n\
                         .map(v => `${{v.id}} (${{v.impact}}): ${{v.help}}, ${{v.nodes.length}} elements: ${{v.nodes.slice(0, 8).map(n => n.target.join(' ')).join(', ')}}`)))\n\
                       .catch(e => done([`axe failed: ${{e}}`]));"
                ),
                vec![],
            )
            .await
            .unwrap();
        let violations: Vec<String> = serde_json::from_value(violations).unwrap();
        assert!(
            violations.is_empty(),
            "{page}: accessibility violations:\n{}",
            violations.join("\n")
        );
        common::report(&format!(
            "console: {page}: no serious accessibility violation"
        ));
    }

    /// The page's cumulative layout shift since it loaded (shifts right after input excluded),
    /// and what moved, for the message when it is too much. Chromium hands a new observer the
    /// shifts it buffered in a task of its own: the script waits two frames for it.
    async fn layout_shift(&self) -> (f64, String) {
        let measured = self
            .session
            .client
            .execute_async(
                "const done = arguments[0]; let total = 0; const moved = [];\
                 const name = n => n ? `${n.nodeName}${n.id ? '#' + n.id : ''}${n.className && n.className.baseVal === undefined ? '.' + String(n.className).split(' ').join('.') : ''}` : '?';\
                 new PerformanceObserver(list => { for (const e of list.getEntries()) {\
                   if (e.hadRecentInput) continue; total += e.value;\
                   for (const s of e.sources) moved.push(`${name(s.node)} ${Math.round(s.previousRect.y)}->${Math.round(s.currentRect.y)} (${e.value.toFixed(3)})`); } })\
                   .observe({type: 'layout-shift', buffered: true});\
                 requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(() => done([total, moved.join(', ')]))));",
                vec![],
            )
            .await
            .unwrap();
        (
            measured[0].as_f64().unwrap(),
            measured[1].as_str().unwrap_or_default().to_string(),
        )
    }

    async fn screenshot(&self, name: &str) {
        if let Some(dir) = &self.screenshots {
            // Web fonts are not used, but the last answer's paint may lag a frame.
            self.run(
                "return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));",
                vec![],
            )
            .await;
            let png = self.session.client.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }

    /// Every entry of the browser's console log that is an error, but the failed loads of the
    /// statuses the test provoked on purpose.
    async fn console_errors(&self) -> Vec<String> {
        let log = self
            .session
            .console_log()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        log.into_iter()
            .filter(|(level, _)| level == "SEVERE")
            .map(|(_, message)| message)
            .filter(|message| {
                !self.provoked.iter().any(|(status, path)| {
                    message.contains(path)
                        && message
                            .contains(&format!("the server responded with a status of {status}"))
                })
            })
            .collect()
    }

    async fn sign_in(&self, email: &str) {
        self.until("the sign-in form", "document.querySelector('#field-email')")
            .await;
        self.type_into("#field-email", email).await;
        self.type_into("#field-password", PASSWORD).await;
        self.click("form button[type=submit]").await;
        self.until(
            "the patients list after signing in",
            "document.querySelector('h1')?.innerText === 'Patients' && !document.getElementById('nav').hidden",
        )
        .await;
    }

    async fn sign_out(&self) {
        self.click("#sign-out").await;
        self.until(
            "the sign-in page saying so",
            "document.querySelector('#notice')?.innerText.includes('You signed out.')",
        )
        .await;
    }
}

/// A fresh staff user with `role`, made by the seed admin; returns the email.
fn staff(role: &str) -> String {
    let email = format!("{}@clinic.test", common::unique("console"));
    let (status, _, body) = common::Client::seed_admin().patiently(
        "POST",
        "/auth/users",
        Some(&json!({ "email": email, "password": PASSWORD, "role": role })),
    );
    assert_eq!(status, 201, "creating {role} {email}: {body}");
    email
}

#[tokio::test]
async fn staff_do_a_days_work_in_the_console() {
    let admin = staff("ADMIN");
    let clinician = staff("CLINICIAN");
    let mut browser = Browser::start().await;

    // The page and its files are served by the console component, cached as they should be.
    let (status, headers, _) = common::get(&format!("{}/", common::gateway()));
    assert_eq!(status, 200);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(header("cache-control"), "no-cache");
    assert!(header("content-security-policy").contains("script-src 'self'"));

    // Signing in.
    browser.open("/").await;
    browser
        .until(
            "the sign-in page",
            "document.querySelector('h1')?.innerText === 'Sign in'",
        )
        .await;
    browser.accessible("sign-in").await;
    browser.screenshot("sign-in").await;
    browser.sign_in(&admin).await;
    browser
        .until(
            "a page of patients",
            "document.querySelectorAll('tbody tr td a').length > 0",
        )
        .await;
    browser.accessible("patients").await;
    browser.screenshot("patients").await;

    // Registering a patient: a bad email is shown beside its field, then fixed.
    let name = common::unique("Console Patient");
    browser.click_text("a.button", "New patient").await;
    browser
        .until(
            "the new patient form",
            "document.querySelector('#field-name')",
        )
        .await;
    browser.type_into("#field-name", &name).await;
    browser.type_into("#field-email", "not-an-email").await;
    browser
        .type_into("#field-address", "1 Console Street")
        .await;
    browser.set("#field-dateOfBirth", "1990-04-01").await;
    browser.provoked.push((400, "/api/patients"));
    browser.click("form button[type=submit]").await;
    let email_error = browser.text_of("#field-email-error").await;
    assert!(!email_error.is_empty());
    assert_eq!(
        browser
            .run(
                "return document.querySelector('#field-email').getAttribute('aria-invalid');",
                vec![]
            )
            .await,
        "true"
    );
    browser.accessible("new patient, with an error").await;
    browser.screenshot("patient-form-error").await;
    let email = format!("{}@example.test", common::unique("console"));
    browser.type_into("#field-email", &email).await;
    browser.click("form button[type=submit]").await;
    browser
        .until(
            "the new patient's page",
            &format!("document.querySelector('h1')?.innerText === {name:?}"),
        )
        .await;
    let patient_id = browser
        .run("return location.hash.split('/')[2];", vec![])
        .await
        .as_str()
        .unwrap()
        .to_string();
    // The billing account is opened a moment after registration (the outbox relay): either
    // answer is a finished page.
    browser
        .until(
            "the billing account and appointments panels",
            "document.querySelectorAll('.columns .panel').length === 2 && !document.querySelector('.columns .loading')",
        )
        .await;
    browser.accessible("patient").await;
    browser.screenshot("patient").await;

    // Finding them by search, as the name is typed.
    browser.open("/#/patients").await;
    browser
        .until(
            "the list",
            "document.querySelectorAll('tbody tr td a').length > 0",
        )
        .await;
    browser
        .type_into("#field-search", &name[..name.len() - 2])
        .await;
    browser
        .until(
            "only the patient searched for",
            &format!(
                "(() => {{ const names = [...document.querySelectorAll('tbody td a')].map(a => a.innerText);\
                 return names.length === 1 && names[0] === {name:?}; }})()"
            ),
        )
        .await;

    // Two bookings on one morning: the second overlaps and is refused with the current state.
    // A day a while ahead (the patient is new, so no other booking can meet theirs), as the
    // browser's calendar names it.
    let day = browser
        .run(
            "return new Date(Date.now() + 40 * 864e5).toLocaleDateString('sv-SE');",
            vec![],
        )
        .await
        .as_str()
        .unwrap()
        .to_string();
    browser.provoked.push((409, "/api/appointments"));
    let book = |start: &'static str, end: &'static str, reason: &'static str| {
        let (browser, day, patient_id) = (&browser, &day, &patient_id);
        async move {
            browser
                .open(&format!(
                    "/#/appointments/new?patient={patient_id}&date={day}"
                ))
                .await;
            browser
                .until(
                    "the patient offered in the booking form",
                    &format!(
                        "document.querySelector('#field-patientId')?.value === {patient_id:?}"
                    ),
                )
                .await;
            browser.set("#field-startTime", start).await;
            browser.set("#field-endTime", end).await;
            browser.type_into("#field-reason", reason).await;
            browser.click("form button[type=submit]").await;
        }
    };
    book("10:00", "10:30", "Console check-up").await;
    browser
        .until(
            "the day with the booking",
            "[...document.querySelectorAll('.slot')].some(s => s.innerText.includes('Console check-up'))",
        )
        .await;
    browser.accessible("appointments, a day").await;
    book("10:15", "10:45", "Console overlap").await;
    let refusal = browser.text_of("#notice .message.error").await;
    assert!(
        refusal.contains("another scheduled appointment"),
        "{refusal}"
    );
    let booked = browser.text_of("form [aria-live] ul").await;
    assert!(booked.contains("Console check-up"), "{booked}");
    browser.screenshot("booking-conflict").await;

    // Rescheduling the first, then cancelling it.
    browser
        .open(&format!("/#/appointments?view=day&date={day}"))
        .await;
    browser.click_text(".slot a.button", "Reschedule").await;
    browser
        .until(
            "the appointment in the form",
            "document.querySelector('#field-reason')?.value === 'Console check-up'",
        )
        .await;
    browser.set("#field-startTime", "11:00").await;
    browser.set("#field-endTime", "11:30").await;
    browser.click("form button[type=submit]").await;
    browser
        .until(
            "the day with the moved booking",
            "[...document.querySelectorAll('.slot .time')].some(t => t.innerText.startsWith('11:00'))",
        )
        .await;
    browser.click_text(".slot button", "Cancel").await;
    browser.click("dialog button.danger").await;
    browser
        .until(
            "the booking marked cancelled",
            "[...document.querySelectorAll('.slot.cancelled')].some(s => s.innerText.includes('Console check-up'))",
        )
        .await;
    browser
        .open(&format!("/#/appointments?view=week&date={day}"))
        .await;
    browser
        .until("the week", "document.querySelectorAll('.day').length === 7 && !document.querySelector('.day .loading')")
        .await;
    browser.accessible("appointments, a week").await;
    browser.screenshot("appointments-week").await;

    // Analytics, drawn in the page, for an admin.
    browser.click_text("#nav a", "Analytics").await;
    browser
        .until(
            "the chart",
            "document.querySelectorAll('svg.chart rect').length === 30",
        )
        .await;
    let registered = browser.text_of(".stat .value").await;
    assert!(
        registered.parse::<u64>().is_ok_and(|n| n > 0),
        "{registered}"
    );
    browser.accessible("analytics").await;
    browser.screenshot("analytics").await;

    // The API reference, from the merged document.
    browser.open("/reference").await;
    browser
        .until(
            "the operations of the API",
            "document.querySelectorAll('.opblock').length > 10",
        )
        .await;
    browser.accessible("API reference").await;
    browser.screenshot("reference").await;
    // "Try it out" calls the gateway with a token pasted into Authorize.
    let token = common::Client::login(&admin, PASSWORD).token.unwrap();
    browser.click(".auth-wrapper .btn.authorize").await;
    browser
        .until(
            "the authorize dialog",
            "document.querySelector('.auth-container input')",
        )
        .await;
    browser.type_into(".auth-container input", &token).await;
    browser.click(".auth-btn-wrapper .btn.authorize").await;
    browser.click(".auth-btn-wrapper .btn-done").await;
    browser
        .click(".opblock-get .opblock-summary-path[data-path='/api/analytics/summary']")
        .await;
    browser
        .until(
            "the operation opened",
            "document.querySelector('.try-out__btn')",
        )
        .await;
    browser.click(".try-out__btn").await;
    browser.click(".btn.execute").await;
    let answered = browser
        .text_of(".live-responses-table tr.response .response-col_status")
        .await;
    assert!(
        answered.starts_with("200"),
        "try it out answered {answered}"
    );
    browser
        .accessible("API reference, an operation tried")
        .await;

    // Every page loaded afresh, at a desk's width and a phone's: nothing moves when its data
    // arrives, and nothing is wider than the window.
    let pages = [
        (
            "patients",
            "/#/patients".to_string(),
            "document.querySelectorAll('tbody tr td a').length > 0",
        ),
        (
            "patient",
            format!("/#/patients/{patient_id}"),
            "document.querySelector('dl.facts dd') && !document.querySelector('.loading')",
        ),
        (
            "appointments",
            format!("/#/appointments?view=week&date={day}"),
            "document.querySelector('.day') && !document.querySelector('.loading')",
        ),
        (
            "analytics",
            "/#/analytics".to_string(),
            "document.querySelectorAll('svg.chart rect').length === 30",
        ),
    ];
    for (width, height) in [(1280, 900), (390, 844)] {
        browser
            .session
            .client
            .set_window_size(width, height)
            .await
            .unwrap();
        for (page, path, loaded) in &pages {
            browser.session.client.goto("about:blank").await.unwrap();
            browser.open(path).await;
            browser
                .until(&format!("{page} at {width} px"), loaded)
                .await;
            let (shift, moved) = browser.layout_shift().await;
            assert!(
                shift < 0.1,
                "{page} at {width} px: layout shift {shift}: {moved}"
            );
            let overflow = browser
                .run("return document.documentElement.scrollWidth - document.documentElement.clientWidth;", vec![])
                .await;
            assert!(
                overflow.as_i64().unwrap() <= 0,
                "{page} at {width} px: {overflow} px too wide"
            );
            if width < 500 {
                browser.screenshot(&format!("{page}-phone")).await;
            }
        }
    }
    browser
        .session
        .client
        .set_window_size(1280, 900)
        .await
        .unwrap();
    common::report("console: patients, patient, appointments and analytics at 1280 and 390 px: no layout shift of 0.1 or more, nothing too wide");

    browser.sign_out().await;

    // A clinician sees no analytics, and the API refuses them anyway.
    browser.sign_in(&clinician).await;
    let analytics_link_shown = browser
        .run(
            "return [...document.querySelectorAll('#nav a')].some(a => a.innerText === 'Analytics' && a.offsetParent !== null);",
            vec![],
        )
        .await;
    assert_eq!(analytics_link_shown, false);
    browser.open("/#/analytics").await;
    browser
        .until(
            "the page saying analytics is for administrators",
            "document.querySelector('main')?.innerText.includes('for administrators')",
        )
        .await;
    browser.provoked.push((403, "/api/analytics/summary"));
    let status = browser
        .session
        .client
        .execute_async(
            "const done = arguments[0]; const s = JSON.parse(sessionStorage.getItem('pm.session'));\
             fetch('/api/analytics/summary', {headers: {authorization: `Bearer ${s.token}`}}).then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, 403);
    browser.sign_out().await;

    // A session ends when its token expires, and the console says so: a token that lives three
    // seconds, kept as the sign-in page keeps one.
    let (short, claims) = common::current_tokens()
        .issue("expiring@clinic.test", "CLINICIAN", kit::tokens::now(), 3)
        .unwrap();
    browser
        .run(
            "sessionStorage.setItem('pm.session', JSON.stringify({token: arguments[0], \
             subject: 'expiring@clinic.test', role: 'CLINICIAN', expiresAt: arguments[1]}));",
            vec![json!(short), json!(claims.exp)],
        )
        .await;
    browser.session.client.goto("about:blank").await.unwrap();
    browser.open("/#/patients").await;
    browser
        .until(
            "the sign-in page saying the session expired",
            "document.querySelector('#notice')?.innerText.includes('Your session has expired')",
        )
        .await;

    let errors = browser.console_errors().await;
    browser.session.end().await;
    assert!(
        errors.is_empty(),
        "the browser's console logged errors:\n{}",
        errors.join("\n")
    );
    common::report(&format!(
        "console: signed in, registered {name} after a field error, found them by search, booked, \
         was refused an overlap, rescheduled, cancelled, saw analytics as admin and not as clinician; \
         no console error, patient {patient_id}"
    ));
}
