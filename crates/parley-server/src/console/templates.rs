//! The console's Templates pages: the list with filters and Meta's reasons, a detail view with
//! a preview drawn like a WhatsApp bubble, a create form with live preview (own JavaScript,
//! `/console/templates.js`) whose field errors come from the server's checks, sync and delete.

use askama::Template;
use axum::Form;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use parley_engine::templates::template_id;
use parley_engine::templates::{NewTemplate, TemplateChangeError, TemplateIssue};
use parley_store::TemplateRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    PageError, PageResult, SameOrigin, SignedIn, SignedInJson, query_value, render, render_with,
};
use crate::AppState;
use crate::error::ApiError;
use crate::routes::messages::rfc3339;
use crate::routes::templates::{
    TemplateQuery, UploadQuery, matches, page_after, upload_template_media,
};

/// What the bubble shows.
pub struct Preview {
    /// `TEXT`, `IMAGE`, `VIDEO`, `DOCUMENT`, `LOCATION` or empty.
    pub header_format: String,
    pub header_text: String,
    pub body: String,
    pub footer: String,
    pub buttons: Vec<String>,
}

/// Substitutes the examples into `{{…}}` (positional from a list, named from pairs).
fn fill(text: &str, positional: &[String], named: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let key = after[..close].trim();
        let value = key
            .parse::<usize>()
            .ok()
            .and_then(|n| positional.get(n.wrapping_sub(1)).cloned())
            .or_else(|| named.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()));
        match value {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn pairs(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    Some((
                        p.get("param_name")?.as_str()?.to_owned(),
                        p.get("example")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The bubble for Meta's components, with example values in place of the variables.
pub fn preview(components: &Value) -> Preview {
    let mut p = Preview {
        header_format: String::new(),
        header_text: String::new(),
        body: String::new(),
        footer: String::new(),
        buttons: Vec::new(),
    };
    for c in components.as_array().map(Vec::as_slice).unwrap_or_default() {
        let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        match s("type").to_ascii_uppercase().as_str() {
            "HEADER" => {
                p.header_format = match s("format") {
                    f if f.is_empty() => "TEXT".into(),
                    f => f.to_ascii_uppercase(),
                };
                p.header_text = fill(
                    &s("text"),
                    &strings(c.pointer("/example/header_text")),
                    &pairs(c.pointer("/example/header_text_named_params")),
                );
            }
            "BODY" => {
                let text = s("text");
                p.body = if text.is_empty() && c.get("add_security_recommendation").is_some() {
                    "123456 is your verification code. For your security, do not share this code."
                        .into()
                } else if text.is_empty() {
                    "123456 is your verification code.".into()
                } else {
                    let positional = c
                        .pointer("/example/body_text/0")
                        .map(|v| strings(Some(v)))
                        .unwrap_or_default();
                    fill(
                        &text,
                        &positional,
                        &pairs(c.pointer("/example/body_text_named_params")),
                    )
                };
            }
            "FOOTER" => {
                p.footer = match c.get("code_expiration_minutes").and_then(Value::as_u64) {
                    Some(m) => format!("This code expires in {m} minutes."),
                    None => s("text"),
                };
            }
            "BUTTONS" => {
                for b in c
                    .get("buttons")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    let kind = b.get("type").and_then(Value::as_str).unwrap_or("");
                    let text = b.get("text").and_then(Value::as_str).unwrap_or("");
                    p.buttons.push(match kind.to_ascii_uppercase().as_str() {
                        "COPY_CODE" => "Copy offer code".to_owned(),
                        "OTP" if text.is_empty() => "Copy code".to_owned(),
                        _ => text.to_owned(),
                    });
                }
            }
            _ => {}
        }
    }
    p
}

struct Row {
    id: String,
    name: String,
    language: String,
    category: String,
    status: String,
    reason: String,
    quality: String,
    updated: String,
}

/// Meta's reason for a status that blocks sends: rejection reason, pause or disable details.
fn reason(t: &TemplateRecord) -> String {
    let raw = &t.raw;
    let mut parts = Vec::new();
    if let Some(r) = raw
        .get("rejected_reason")
        .and_then(Value::as_str)
        .filter(|r| *r != "NONE")
    {
        parts.push(r.to_owned());
    }
    if let Some(rec) = raw
        .pointer("/rejection_info/recommendation")
        .and_then(Value::as_str)
    {
        parts.push(rec.to_owned());
    }
    if let Some(info) = raw.get("other_info") {
        for k in ["title", "description"] {
            if let Some(v) = info.get(k).and_then(Value::as_str) {
                parts.push(v.to_owned());
            }
        }
    }
    if let Some(d) = raw.pointer("/disable_info/disable_date") {
        parts.push(format!("disabled {d}"));
    }
    parts.join(" — ")
}

fn quality(t: &TemplateRecord) -> String {
    match t.raw.get("quality_score") {
        Some(Value::Object(q)) => q
            .get("score")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

#[derive(Template)]
#[template(path = "templates_list.html")]
struct ListPage {
    active: &'static str,
    email: String,
    rows: Vec<Row>,
    status: String,
    category: String,
    language: String,
    name: String,
    notice: Option<String>,
    /// The next page's link (keeping the filters), when there is one.
    next: Option<String>,
}

/// Templates per page of the console's table.
const LIST_PAGE: usize = 50;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    name: String,
    synced: Option<String>,
    /// The last template of the previous page.
    after: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Query(q): Query<ListQuery>,
) -> Response {
    let filter = TemplateQuery {
        status: Some(q.status.clone()),
        category: Some(q.category.clone()),
        language: Some(q.language.clone()),
        name: Some(q.name.clone()),
        ..TemplateQuery::default()
    };
    let all: Vec<TemplateRecord> = state
        .engine
        .templates(&app.id)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|t| matches(t, &filter))
        .collect();
    // A cursor that is no longer in the list (the template was deleted, the filter changed)
    // starts again from the first page.
    let after = (q.after.as_deref()).filter(|a| all.iter().any(|t| t.id.as_str() == *a));
    let mut page = page_after(all, after, LIST_PAGE).unwrap_or_default();
    let next = super::next_page(&mut page, LIST_PAGE as u32, |t| t.id.to_string()).map(|after| {
        let kept = [
            ("status", Some(q.status.as_str())),
            ("category", Some(q.category.as_str())),
            ("language", Some(q.language.as_str())),
            ("name", Some(q.name.as_str())),
        ];
        super::next_href("/templates", &kept, "after", &after)
    });
    let rows = page
        .into_iter()
        .map(|t| Row {
            reason: reason(&t),
            quality: quality(&t),
            id: t.id.to_string(),
            name: t.template.name.to_string(),
            language: t.template.language.to_string(),
            category: t.template.category.as_str().to_owned(),
            status: t.template.status.as_str().to_owned(),
            updated: rfc3339(t.updated_at),
        })
        .collect();
    render(&ListPage {
        active: "templates",
        email,
        rows,
        status: q.status,
        category: q.category,
        language: q.language,
        name: q.name,
        notice: q.synced.map(|s| format!("Synced from Meta: {s}.")),
        next,
    })
}

pub async fn sync(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn { app, .. }: SignedIn,
) -> Response {
    let (mut synced, mut deleted, mut failed) = (0, 0, Vec::new());
    for p in state.engine.platforms(&app.id).await.unwrap_or_default() {
        match state.engine.sync_templates(&app.id, &p.id).await {
            Ok(r) => {
                synced += r.synced;
                deleted += r.deleted;
            }
            Err(e) => failed.push(e.message),
        }
    }
    let mut note = format!("{synced} templates, {deleted} marked deleted");
    if !failed.is_empty() {
        note.push_str(&format!("; failed: {}", failed.join("; ")));
    }
    Redirect::to(&format!("/templates?synced={}", query_value(&note))).into_response()
}

#[derive(Template)]
#[template(path = "template_detail.html")]
struct DetailPage {
    active: &'static str,
    email: String,
    id: String,
    name: String,
    language: String,
    category: String,
    status: String,
    reason: String,
    quality: String,
    meta_id: String,
    variables: String,
    updated: String,
    deleted: String,
    preview: Preview,
    confirm_delete: bool,
    components_json: String,
}

#[derive(Deserialize, Default)]
pub struct DetailQuery {
    confirm_delete: Option<String>,
}

pub async fn detail(
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> PageResult {
    let t = async {
        state
            .engine
            .template_by_id(&app.id, &template_id(&id)?)
            .await
    }
    .await
    .map_err(|_| PageError::not_found("No such template."))?;
    let components = t.raw.get("components").cloned().unwrap_or_default();
    Ok(render(&DetailPage {
        active: "templates",
        email,
        id: t.id.to_string(),
        name: t.template.name.to_string(),
        language: t.template.language.to_string(),
        category: t.template.category.as_str().to_owned(),
        status: t.template.status.as_str().to_owned(),
        reason: reason(&t),
        quality: quality(&t),
        meta_id: t.meta_id.clone().unwrap_or_default(),
        variables: t
            .template
            .variables()
            .into_iter()
            .map(|v| v.key)
            .collect::<Vec<_>>()
            .join(", "),
        updated: rfc3339(t.updated_at),
        deleted: t.deleted_at.map(rfc3339).unwrap_or_default(),
        preview: preview(&components),
        confirm_delete: q.confirm_delete.is_some() && t.deleted_at.is_none(),
        components_json: serde_json::to_string_pretty(&components).unwrap_or_default(),
    }))
}

pub async fn delete(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn { app, .. }: SignedIn,
    Path(id): Path<String>,
) -> PageResult {
    async {
        state
            .engine
            .delete_template(&app.id, &template_id(&id)?)
            .await
    }
    .await
    .map_err(|e| PageError::unprocessable(e.message))?;
    Ok(Redirect::to(&format!("/templates/{id}")).into_response())
}

/// The create form's fields (all text; empty means absent).
#[derive(Deserialize, Default, Clone)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    parameter_format: String,
    #[serde(default)]
    header_format: String,
    #[serde(default)]
    header_text: String,
    #[serde(default)]
    header_example: String,
    #[serde(default)]
    header_handle: String,
    #[serde(default)]
    body: String,
    /// One example per variable, in order, separated by `|`.
    #[serde(default)]
    body_examples: String,
    #[serde(default)]
    footer: String,
    #[serde(default)]
    button1_type: String,
    #[serde(default)]
    button1_text: String,
    #[serde(default)]
    button1_value: String,
    #[serde(default)]
    button2_type: String,
    #[serde(default)]
    button2_text: String,
    #[serde(default)]
    button2_value: String,
    #[serde(default)]
    button3_type: String,
    #[serde(default)]
    button3_text: String,
    #[serde(default)]
    button3_value: String,
}

/// Variables in order of first appearance.
fn variables(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else { break };
        let key = after[..close].trim().to_owned();
        if !out.contains(&key) {
            out.push(key);
        }
        rest = &after[close + 2..];
    }
    out
}

/// Builds Meta's components from the form; returns them with the form section each
/// component index came from (to show issues next to the right fields).
fn components(f: &CreateForm) -> (Vec<Value>, Vec<&'static str>) {
    let named = f.parameter_format.eq_ignore_ascii_case("named");
    let auth = f.category.eq_ignore_ascii_case("AUTHENTICATION");
    let mut list = Vec::new();
    let mut sections = Vec::new();
    let format = f.header_format.trim().to_ascii_uppercase();
    if !format.is_empty() && format != "NONE" {
        let mut h = json!({"type": "HEADER", "format": format});
        match format.as_str() {
            "TEXT" => {
                h["text"] = json!(f.header_text);
                let vars = variables(&f.header_text);
                if let Some(var) = vars.first() {
                    h["example"] = if named {
                        json!({"header_text_named_params": [{"param_name": var, "example": f.header_example}]})
                    } else {
                        json!({"header_text": [f.header_example]})
                    };
                }
            }
            "IMAGE" | "VIDEO" | "DOCUMENT" => {
                h["example"] = json!({"header_handle": [f.header_handle]});
            }
            _ => {}
        }
        list.push(h);
        sections.push("header");
    }
    let mut body = if auth && f.body.trim().is_empty() {
        json!({"type": "BODY", "add_security_recommendation": true})
    } else {
        json!({"type": "BODY", "text": f.body})
    };
    let vars = variables(&f.body);
    if !vars.is_empty() {
        let examples: Vec<String> = f
            .body_examples
            .split('|')
            .map(|s| s.trim().to_owned())
            .collect();
        body["example"] = if named {
            json!({"body_text_named_params": vars.iter().enumerate().map(|(i, v)| json!({
                "param_name": v, "example": examples.get(i).cloned().unwrap_or_default()
            })).collect::<Vec<_>>()})
        } else {
            json!({"body_text": [vars.iter().enumerate().map(|(i, _)| examples.get(i).cloned().unwrap_or_default()).collect::<Vec<_>>()]})
        };
    }
    list.push(body);
    sections.push("body");
    if !f.footer.trim().is_empty() {
        let footer = match (auth, f.footer.trim().parse::<u64>()) {
            (true, Ok(minutes)) => json!({"type": "FOOTER", "code_expiration_minutes": minutes}),
            _ => json!({"type": "FOOTER", "text": f.footer}),
        };
        list.push(footer);
        sections.push("footer");
    }
    let mut buttons = Vec::new();
    for (kind, text, value) in [
        (&f.button1_type, &f.button1_text, &f.button1_value),
        (&f.button2_type, &f.button2_text, &f.button2_value),
        (&f.button3_type, &f.button3_text, &f.button3_value),
    ] {
        let kind = kind.trim().to_ascii_uppercase();
        let b = match kind.as_str() {
            "" | "NONE" => continue,
            "QUICK_REPLY" => json!({"type": kind, "text": text}),
            "URL" => {
                // `https://…/{{1}} example` — an example follows the URL when it has a variable.
                let mut parts = value.split_whitespace();
                let url = parts.next().unwrap_or("").to_owned();
                let mut b = json!({"type": kind, "text": text, "url": url});
                if url.contains("{{") {
                    let example = parts
                        .next()
                        .map_or_else(|| url.replace("{{1}}", "example"), str::to_owned);
                    b["example"] = json!([example]);
                }
                b
            }
            "PHONE_NUMBER" => json!({"type": kind, "text": text, "phone_number": value}),
            "COPY_CODE" => json!({"type": kind, "example": value}),
            "OTP" => json!({"type": kind, "otp_type": "COPY_CODE", "text": text}),
            _ => json!({"type": kind, "text": text}),
        };
        buttons.push(b);
    }
    if !buttons.is_empty() {
        list.push(json!({"type": "BUTTONS", "buttons": buttons}));
        sections.push("buttons");
    }
    (list, sections)
}

/// The issues of one form section (`name`, `header`, `body`, …).
#[derive(Default)]
struct FieldErrors {
    name: Vec<String>,
    language: Vec<String>,
    category: Vec<String>,
    parameter_format: Vec<String>,
    header: Vec<String>,
    body: Vec<String>,
    footer: Vec<String>,
    buttons: Vec<String>,
    other: Vec<String>,
}

fn field_errors(issues: &[TemplateIssue], sections: &[&str]) -> FieldErrors {
    let mut e = FieldErrors::default();
    for i in issues {
        let section = if let Some(rest) = i.field.strip_prefix("components[") {
            rest.split(']')
                .next()
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| sections.get(n).copied())
                .unwrap_or("other")
        } else {
            i.field.split(['.', '[']).next().unwrap_or("other")
        };
        let target = match section {
            "name" => &mut e.name,
            "language" => &mut e.language,
            "category" => &mut e.category,
            "parameter_format" => &mut e.parameter_format,
            "header" => &mut e.header,
            "body" => &mut e.body,
            "footer" => &mut e.footer,
            "buttons" => &mut e.buttons,
            _ => &mut e.other,
        };
        target.push(i.message.clone());
    }
    e
}

#[derive(Template)]
#[template(path = "template_new.html")]
struct NewPage {
    active: &'static str,
    email: String,
    form: CreateForm,
    errors: FieldErrors,
    issues: Vec<TemplateIssue>,
    failure: Option<String>,
}

pub async fn new_form(SignedIn { email, .. }: SignedIn) -> Response {
    render(&NewPage {
        active: "templates",
        email,
        form: CreateForm {
            language: "en".into(),
            category: "UTILITY".into(),
            parameter_format: "positional".into(),
            ..CreateForm::default()
        },
        errors: FieldErrors::default(),
        issues: Vec::new(),
        failure: None,
    })
}

pub async fn create(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Form(form): Form<CreateForm>,
) -> Response {
    let (list, sections) = components(&form);
    let draft = NewTemplate {
        platform_id: None,
        name: form.name.trim().to_owned(),
        language: form.language.trim().to_owned(),
        category: form.category.trim().to_owned(),
        parameter_format: Some(form.parameter_format.clone()).filter(|p| !p.is_empty()),
        components: list,
    };
    let (issues, failure) = match state.engine.create_template(&app.id, draft).await {
        Ok(t) => return Redirect::to(&format!("/templates/{}", t.id)).into_response(),
        Err(TemplateChangeError::Invalid(issues)) => (issues, None),
        Err(TemplateChangeError::Failed(f)) => (Vec::new(), Some(f.message)),
    };
    render_with(
        StatusCode::UNPROCESSABLE_ENTITY,
        &NewPage {
            active: "templates",
            email,
            errors: field_errors(&issues, &sections),
            issues,
            failure,
            form,
        },
    )
}

/// The create form's media header example: the page's script posts the file here and puts
/// the returned handle into the form. Answers as `POST /api/v1/media/uploads` does.
pub async fn upload(
    State(state): State<AppState>,
    SignedInJson(app): SignedInJson,
    Query(q): Query<UploadQuery>,
    _slot: crate::UploadSlot<{ crate::MEDIA_BODY_LIMIT }>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    Ok(upload_template_media(&state, &app.id, q, &headers, body)
        .await?
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_fill_the_bubble() {
        let p = preview(&json!([
            {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::x"]}},
            {"type": "BODY", "text": "Hi {{1}}, {{2}} off", "example": {"body_text": [["Ana", "20%"]]}},
            {"type": "FOOTER", "text": "Shop"},
            {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Go", "url": "https://x.example/{{1}}"}]}
        ]));
        assert_eq!(p.header_format, "IMAGE");
        assert_eq!(p.body, "Hi Ana, 20% off");
        assert_eq!(p.footer, "Shop");
        assert_eq!(p.buttons, vec!["Go"]);
        assert_eq!(
            fill(
                "{{first_name}}!",
                &[],
                &[("first_name".into(), "Bo".into())]
            ),
            "Bo!"
        );
        assert_eq!(fill("{{2}} {{x", &["a".into()], &[]), "{{2}} {{x");
    }
}
