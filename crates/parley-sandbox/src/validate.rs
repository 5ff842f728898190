//! Template send validation, mirroring Meta's checks and codes.
//!
//! This is where a client's template bug must surface exactly as Meta reports it: unknown or
//! unapproved template (132001, 132015, 132016), wrong parameter counts or names (132000),
//! parameters of the wrong kind (132012), bad parameter text (132018) and hydrated text too
//! long (132005). It reads the template objects as Meta returns them, never a shared type.

use std::collections::HashSet;

use serde_json::Value;

use crate::errors::GraphError;

/// Meta's limit on a hydrated body.
const BODY_MAX: usize = 1024;
/// Meta's limit on a hydrated text header.
const HEADER_MAX: usize = 60;

/// The variables of a template text, in order of first appearance, deduplicated
/// (`"{{1}} {{2}} {{1}}"` → `["1","2"]`, `"{{first_name}}"` → `["first_name"]`).
pub(crate) fn variables(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !found.iter().any(|f| f == name)
        {
            found.push(name.to_owned());
        }
        rest = &after[end + 2..];
    }
    found
}

/// Finds `name` in `language` among a WABA's templates and checks it may be sent.
pub(crate) fn find_template<'a>(
    templates: &'a [Value],
    name: &str,
    language: &str,
) -> Result<&'a Value, GraphError> {
    let template = templates.iter().find(|t| {
        t.get("name").and_then(Value::as_str) == Some(name)
            && t.get("language").and_then(Value::as_str) == Some(language)
    });
    let missing = || {
        GraphError::new(
            132001,
            format!("template name ({name}) does not exist in {language}"),
        )
    };
    let template = template.ok_or_else(missing)?;
    match str_at(template, "status").to_ascii_uppercase().as_str() {
        "APPROVED" => Ok(template),
        "PAUSED" => Err(GraphError::new(
            132015,
            format!("Template {name} is paused due to low quality and cannot be sent."),
        )),
        "DISABLED" => Err(GraphError::new(
            132016,
            format!("Template {name} has been disabled due to low quality and cannot be sent."),
        )),
        _ => Err(missing()),
    }
}

/// What a template's header needs from a send.
enum HeaderNeed {
    None,
    Text(Vec<String>),
    Media(String),
    Location,
}

/// What one of a template's buttons needs.
struct ButtonNeed {
    kind: String,
    variables: usize,
}

struct Needs {
    named: bool,
    header: HeaderNeed,
    header_text: String,
    body: Vec<String>,
    body_text: String,
    buttons: Vec<ButtonNeed>,
}

fn str_at<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

fn needs(template: &Value) -> Needs {
    let named = str_at(template, "parameter_format").eq_ignore_ascii_case("NAMED");
    let mut needs = Needs {
        named,
        header: HeaderNeed::None,
        header_text: String::new(),
        body: Vec::new(),
        body_text: String::new(),
        buttons: Vec::new(),
    };
    let components = template
        .get("components")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for component in components {
        match str_at(component, "type").to_ascii_uppercase().as_str() {
            "HEADER" => {
                let format = str_at(component, "format").to_ascii_uppercase();
                needs.header = match format.as_str() {
                    "" | "TEXT" => {
                        needs.header_text = str_at(component, "text").to_owned();
                        let vars = variables(&needs.header_text);
                        if vars.is_empty() {
                            HeaderNeed::None
                        } else {
                            HeaderNeed::Text(vars)
                        }
                    }
                    "LOCATION" => HeaderNeed::Location,
                    _ => HeaderNeed::Media(format),
                };
            }
            "BODY" => {
                needs.body_text = str_at(component, "text").to_owned();
                needs.body = variables(&needs.body_text);
            }
            "BUTTONS" => {
                let buttons = component
                    .get("buttons")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                for button in buttons {
                    let kind = str_at(button, "type").to_ascii_uppercase();
                    let variables = match kind.as_str() {
                        "URL" => variables(str_at(button, "url")).len(),
                        "COPY_CODE" | "OTP" => 1,
                        _ => 0,
                    };
                    needs.buttons.push(ButtonNeed { kind, variables });
                }
            }
            _ => {}
        }
    }
    needs
}

fn count_mismatch(part: &str, got: usize, expected: usize) -> GraphError {
    GraphError::new(
        132000,
        format!(
            "{part}: number of localizable_params ({got}) does not match the expected number of params ({expected})"
        ),
    )
}

fn format_mismatch(details: String) -> GraphError {
    GraphError::new(132012, details)
}

/// Checks a send's `template` object against the stored template.
pub(crate) fn check_template_send(template: &Value, request: &Value) -> Result<(), GraphError> {
    let needs = needs(template);
    let components = match request.get("components") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(items)) => items.as_slice(),
        Some(_) => {
            return Err(GraphError::invalid_param(
                "Param template['components'] must be an array.",
            ));
        }
    };

    let mut header_params: Option<&[Value]> = None;
    let mut body_params: Option<&[Value]> = None;
    let mut button_params: Vec<(usize, String, &[Value])> = Vec::new();

    for (i, component) in components.iter().enumerate() {
        if !component.is_object() {
            return Err(GraphError::invalid_param(format!(
                "Param template['components'][{i}] must be an object."
            )));
        }
        let params = match component.get("parameters") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(items)) => items.as_slice(),
            Some(_) => {
                return Err(GraphError::invalid_param(format!(
                    "Param template['components'][{i}]['parameters'] must be an array."
                )));
            }
        };
        let kind = str_at(component, "type").to_ascii_lowercase();
        match kind.as_str() {
            "header" | "body" => {
                let slot = if kind == "header" {
                    &mut header_params
                } else {
                    &mut body_params
                };
                if slot.is_some() {
                    return Err(GraphError::invalid_param(format!(
                        "Param template['components'] has more than one {kind} component."
                    )));
                }
                *slot = Some(params);
            }
            "button" => {
                let sub_type = str_at(component, "sub_type").to_ascii_lowercase();
                if sub_type.is_empty() {
                    return Err(GraphError::invalid_param(format!(
                        "The parameter template['components'][{i}]['sub_type'] is required."
                    )));
                }
                let index = match component.get("index") {
                    Some(Value::Number(n)) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
                    Some(Value::String(s)) => s.trim().parse::<usize>().ok(),
                    _ => None,
                };
                let Some(index) = index else {
                    return Err(GraphError::invalid_param(format!(
                        "Param template['components'][{i}]['index'] must be a non-negative integer (as a number or a string)."
                    )));
                };
                if button_params.iter().any(|(n, _, _)| *n == index) {
                    return Err(GraphError::invalid_param(format!(
                        "Param template['components'] has more than one button with index {index}."
                    )));
                }
                button_params.push((index, sub_type, params));
            }
            "footer" | "carousel" | "limited_time_offer" | "order_status" => {}
            _ => {
                return Err(GraphError::invalid_param(format!(
                    "Param template['components'][{i}]['type'] must be one of {{HEADER, BODY, BUTTON, CAROUSEL, LIMITED_TIME_OFFER}}."
                )));
            }
        }
    }

    let header_text = check_header(&needs, header_params.unwrap_or(&[]))?;
    check_body(&needs, body_params.unwrap_or(&[]))?;
    check_buttons(&needs, &button_params)?;
    if str_at(template, "category").eq_ignore_ascii_case("AUTHENTICATION") {
        check_auth_code(body_params.unwrap_or(&[]), &button_params)?;
    }

    if header_text.chars().count() > HEADER_MAX {
        return Err(GraphError::new(
            132005,
            format!("header: hydrated text is longer than {HEADER_MAX} characters"),
        ));
    }
    let body = hydrate(&needs.body_text, &needs.body, needs.named, body_params);
    if body.chars().count() > BODY_MAX {
        return Err(GraphError::new(
            132005,
            format!("body: hydrated text is longer than {BODY_MAX} characters"),
        ));
    }
    Ok(())
}

/// Checks the header parameters and returns the hydrated header text (empty for media).
fn check_header(needs: &Needs, params: &[Value]) -> Result<String, GraphError> {
    match &needs.header {
        HeaderNeed::None => {
            if !params.is_empty() {
                return Err(count_mismatch("header", params.len(), 0));
            }
            Ok(needs.header_text.clone())
        }
        HeaderNeed::Text(vars) => {
            if params.len() != vars.len() {
                return Err(count_mismatch("header", params.len(), vars.len()));
            }
            for param in params {
                check_text_param("header", param)?;
            }
            if needs.named {
                check_names("header", vars, params)?;
            }
            Ok(hydrate(&needs.header_text, vars, needs.named, Some(params)))
        }
        HeaderNeed::Media(format) => {
            if params.len() != 1 {
                return Err(count_mismatch("header", params.len(), 1));
            }
            let param = &params[0];
            let expected = format.to_ascii_lowercase();
            let got = str_at(param, "type").to_ascii_lowercase();
            if got != expected {
                return Err(format_mismatch(format!(
                    "header: Format mismatch, expected {format}, received {}",
                    got.to_ascii_uppercase()
                )));
            }
            check_media_object(&format!("header {expected}"), param.get(&expected))?;
            Ok(String::new())
        }
        HeaderNeed::Location => {
            if params.len() != 1 {
                return Err(count_mismatch("header", params.len(), 1));
            }
            let param = &params[0];
            let location = param.get("location");
            let ok = str_at(param, "type").eq_ignore_ascii_case("location")
                && location.is_some_and(|l| {
                    l.get("latitude").is_some_and(is_coordinate)
                        && l.get("longitude").is_some_and(is_coordinate)
                });
            if !ok {
                return Err(format_mismatch(
                    "header: Format mismatch, expected LOCATION with latitude and longitude"
                        .to_owned(),
                ));
            }
            Ok(String::new())
        }
    }
}

fn is_coordinate(value: &Value) -> bool {
    value.is_number()
        || value
            .as_str()
            .is_some_and(|s| s.trim().parse::<f64>().is_ok())
}

/// A media object must carry an http(s) `link` or an `id`.
pub(crate) fn check_media_object(what: &str, media: Option<&Value>) -> Result<(), GraphError> {
    let Some(media) = media.filter(|m| m.is_object()) else {
        return Err(format_mismatch(format!(
            "{what}: the parameter object is missing"
        )));
    };
    let id = media.get("id").and_then(Value::as_str).unwrap_or("");
    let link = media.get("link").and_then(Value::as_str).unwrap_or("");
    if !id.trim().is_empty() {
        return Ok(());
    }
    if link.is_empty() {
        return Err(format_mismatch(format!(
            "{what}: either 'link' or 'id' is required"
        )));
    }
    if !is_http_url(link) {
        return Err(format_mismatch(format!(
            "{what}: link '{link}' is not a valid http(s) URL"
        )));
    }
    Ok(())
}

pub(crate) fn is_http_url(link: &str) -> bool {
    let rest = link
        .strip_prefix("https://")
        .or_else(|| link.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !host.contains(char::is_whitespace)
    })
}

fn check_text_param(part: &str, param: &Value) -> Result<(), GraphError> {
    let kind = str_at(param, "type").to_ascii_lowercase();
    if kind != "text" {
        return Err(format_mismatch(format!(
            "{part}: Format mismatch, expected TEXT, received {}",
            if kind.is_empty() {
                "nothing".to_owned()
            } else {
                kind.to_ascii_uppercase()
            }
        )));
    }
    let text = match param.get("text") {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        _ => {
            return Err(format_mismatch(format!(
                "{part}: text parameters need a non-empty 'text'"
            )));
        }
    };
    check_param_text(part, text)
}

/// Meta refuses new lines, tabs and more than four consecutive spaces in parameter text.
fn check_param_text(part: &str, text: &str) -> Result<(), GraphError> {
    if text.contains(['\n', '\t']) || text.contains("     ") {
        return Err(GraphError::new(
            132018,
            format!(
                "{part}: Param text cannot have new-line/tab characters or more than 4 consecutive spaces"
            ),
        ));
    }
    Ok(())
}

fn check_body(needs: &Needs, params: &[Value]) -> Result<(), GraphError> {
    if params.len() != needs.body.len() {
        return Err(count_mismatch("body", params.len(), needs.body.len()));
    }
    for param in params {
        let kind = str_at(param, "type").to_ascii_lowercase();
        match kind.as_str() {
            "text" => check_text_param("body", param)?,
            "currency" | "date_time" => {
                let fallback = param
                    .get(&kind)
                    .and_then(|v| v.get("fallback_value"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if fallback.trim().is_empty() {
                    return Err(format_mismatch(format!(
                        "body: {kind} parameters need '{kind}.fallback_value'"
                    )));
                }
                check_param_text("body", fallback)?;
            }
            other => {
                return Err(format_mismatch(format!(
                    "body: Format mismatch, expected TEXT, received {}",
                    if other.is_empty() {
                        "nothing".to_owned()
                    } else {
                        other.to_ascii_uppercase()
                    }
                )));
            }
        }
    }
    if needs.named {
        check_names("body", &needs.body, params)?;
    }
    Ok(())
}

/// Named templates: each parameter names one variable, each variable is named once.
fn check_names(part: &str, vars: &[String], params: &[Value]) -> Result<(), GraphError> {
    let mut seen: HashSet<&str> = HashSet::new();
    for param in params {
        let Some(name) = param.get("parameter_name").and_then(Value::as_str) else {
            return Err(GraphError::new(
                132000,
                format!("{part}: named templates need 'parameter_name' on every parameter"),
            ));
        };
        if !vars.iter().any(|v| v == name) {
            return Err(GraphError::new(
                132000,
                format!(
                    "{part}: parameter name ({name}) does not match any of the template's parameters ({})",
                    vars.join(", ")
                ),
            ));
        }
        if !seen.insert(name) {
            return Err(GraphError::new(
                132000,
                format!("{part}: parameter name ({name}) is given more than once"),
            ));
        }
    }
    Ok(())
}

fn check_buttons(needs: &Needs, given: &[(usize, String, &[Value])]) -> Result<(), GraphError> {
    for (index, sub_type, params) in given {
        let Some(button) = needs.buttons.get(*index) else {
            return Err(GraphError::new(
                132000,
                format!("button at index {index} does not exist in the template"),
            ));
        };
        let fits = matches!(
            (sub_type.as_str(), button.kind.as_str()),
            ("url", "URL" | "OTP")
                | ("quick_reply", "QUICK_REPLY")
                | ("copy_code", "COPY_CODE")
                | ("flow", "FLOW")
                | ("catalog", "CATALOG")
                | ("mpm", "MPM")
                | ("voice_call", "VOICE_CALL")
        );
        if !fits {
            return Err(format_mismatch(format!(
                "button at index {index}: sub_type {sub_type} does not match the template's {} button",
                button.kind
            )));
        }
        let part = format!("button at index {index}");
        match button.kind.as_str() {
            "URL" | "OTP" => {
                if params.len() != button.variables {
                    return Err(count_mismatch(&part, params.len(), button.variables));
                }
                for param in params.iter() {
                    check_text_param(&part, param)?;
                }
            }
            "QUICK_REPLY" => {
                if params.len() > 1 {
                    return Err(count_mismatch(&part, params.len(), 1));
                }
                for param in params.iter() {
                    let ok = str_at(param, "type").eq_ignore_ascii_case("payload")
                        && param.get("payload").is_some_and(Value::is_string);
                    if !ok {
                        return Err(format_mismatch(format!(
                            "{part}: quick reply parameters need type 'payload' and a 'payload' string"
                        )));
                    }
                }
            }
            "COPY_CODE" => {
                if params.len() != 1 {
                    return Err(count_mismatch(&part, params.len(), 1));
                }
                let ok = str_at(&params[0], "type").eq_ignore_ascii_case("coupon_code")
                    && !str_at(&params[0], "coupon_code").is_empty();
                if !ok {
                    return Err(format_mismatch(format!(
                        "{part}: copy code parameters need type 'coupon_code' and a 'coupon_code'"
                    )));
                }
            }
            _ => {}
        }
    }
    for (index, button) in needs.buttons.iter().enumerate() {
        if button.variables > 0 && !given.iter().any(|(n, _, _)| *n == index) {
            return Err(count_mismatch(
                &format!("button at index {index}"),
                0,
                button.variables,
            ));
        }
    }
    Ok(())
}

/// Meta's longest one-time code.
const OTP_MAX: usize = 15;

/// An authentication template carries the code twice: body `{{1}}` and the URL parameter
/// of button 0 (its copy-code / autofill button). Both must be the same code of at most
/// [`OTP_MAX`] characters (the counts were checked already).
fn check_auth_code(
    body: &[Value],
    buttons: &[(usize, String, &[Value])],
) -> Result<(), GraphError> {
    let body_code = body.first().map(|p| str_at(p, "text"));
    let button_code = buttons
        .iter()
        .find(|(index, _, _)| *index == 0)
        .and_then(|(_, _, params)| params.first())
        .map(|p| str_at(p, "text"));
    for (part, code) in [("body", body_code), ("button at index 0", button_code)] {
        if code.is_some_and(|c| c.chars().count() > OTP_MAX) {
            return Err(GraphError::new(
                132018,
                format!("{part}: the verification code is longer than {OTP_MAX} characters"),
            ));
        }
    }
    if let (Some(body_code), Some(button_code)) = (body_code, button_code)
        && body_code != button_code
    {
        return Err(GraphError::new(
            132018,
            format!(
                "authentication template: the code in the body ({body_code}) and in the button at index 0 ({button_code}) differ"
            ),
        ));
    }
    Ok(())
}

/// The text with each variable replaced by its parameter (for length checks).
fn hydrate(text: &str, vars: &[String], named: bool, params: Option<&[Value]>) -> String {
    let params = params.unwrap_or(&[]);
    let mut out = text.to_owned();
    for (i, var) in vars.iter().enumerate() {
        let param = if named {
            params
                .iter()
                .find(|p| p.get("parameter_name").and_then(Value::as_str) == Some(var))
        } else {
            params.get(i)
        };
        let value = param
            .map(|p| {
                let kind = str_at(p, "type").to_ascii_lowercase();
                match kind.as_str() {
                    "text" => str_at(p, "text").to_owned(),
                    _ => p
                        .get(&kind)
                        .map(|v| str_at(v, "fallback_value").to_owned())
                        .unwrap_or_default(),
                }
            })
            .unwrap_or_default();
        out = out.replace(&format!("{{{{{var}}}}}"), &value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::demo_templates;
    use proptest::prelude::*;
    use serde_json::json;

    fn template(name: &str) -> Value {
        demo_templates()
            .into_iter()
            .find(|t| t["name"] == name)
            .expect("demo template")
    }

    #[test]
    fn variables_are_distinct_and_ordered() {
        assert_eq!(variables("{{2}} {{1}} {{2}}"), vec!["2", "1"]);
        assert_eq!(variables("Hi {{ first_name }}!"), vec!["first_name"]);
        assert!(variables("no vars {{").is_empty());
    }

    #[test]
    fn spring_sale_accepts_full_send() {
        let send = json!({"components": [
            {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://x.example/a.jpg"}}]},
            {"type": "body", "parameters": [
                {"type": "text", "text": "Ana"}, {"type": "text", "text": "20%"}, {"type": "text", "text": "May"}]},
            {"type": "button", "sub_type": "url", "index": 0, "parameters": [{"type": "text", "text": "spring"}]}
        ]});
        assert_eq!(check_template_send(&template("spring_sale"), &send), Ok(()));
    }

    #[test]
    fn missing_button_is_a_count_mismatch() {
        let send = json!({"components": [
            {"type": "header", "parameters": [{"type": "image", "image": {"id": "123"}}]},
            {"type": "body", "parameters": [
                {"type": "text", "text": "Ana"}, {"type": "text", "text": "20%"}, {"type": "text", "text": "May"}]}
        ]});
        let err = check_template_send(&template("spring_sale"), &send).expect_err("fails");
        assert_eq!(err.code, 132000);
    }

    #[test]
    fn named_params_must_match() {
        let ok = json!({"components": [{"type": "body", "parameters": [
            {"type": "text", "parameter_name": "order_id", "text": "A1"},
            {"type": "text", "parameter_name": "first_name", "text": "Ana"}]}]});
        assert_eq!(check_template_send(&template("order_update"), &ok), Ok(()));
        let bad = json!({"components": [{"type": "body", "parameters": [
            {"type": "text", "parameter_name": "order", "text": "A1"},
            {"type": "text", "parameter_name": "first_name", "text": "Ana"}]}]});
        let err = check_template_send(&template("order_update"), &bad).expect_err("fails");
        assert_eq!(err.code, 132000);
    }

    #[test]
    fn newline_in_param_is_refused() {
        let bad = json!({"components": [{"type": "body", "parameters": [
            {"type": "text", "parameter_name": "first_name", "text": "A\nB"}]}]});
        let err = check_template_send(&template("welcome"), &bad).expect_err("fails");
        assert_eq!(err.code, 132018);
    }

    /// A template with a body of literal pieces and variables, an optional text header with one
    /// variable and an optional URL button with one, positional or named.
    #[derive(Debug, Clone)]
    struct Shape {
        named: bool,
        pieces: Vec<String>,
        vars: usize,
        header: bool,
        button: bool,
        auth: bool,
    }

    fn shape() -> impl Strategy<Value = Shape> {
        (
            any::<bool>(),
            prop::collection::vec("[a-zA-Z ,.!{}]{0,12}", 1..5),
            0usize..4,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(named, pieces, vars, header, button, auth)| Shape {
                named,
                pieces,
                vars,
                header,
                button,
                auth,
            })
    }

    impl Shape {
        fn var(&self, i: usize) -> String {
            if self.named {
                format!("v_{i}")
            } else {
                (i + 1).to_string()
            }
        }

        /// The body text: the pieces with the variables between them (each used once, some
        /// twice), with no stray `{{…}}` of their own.
        fn body(&self) -> String {
            let mut text = String::new();
            for (i, piece) in self.pieces.iter().enumerate() {
                text.push_str(&piece.replace("{{", "{").replace("}}", "}"));
                text.push(' ');
                if i < self.vars {
                    text.push_str(&format!("{{{{{}}}}} ", self.var(i)));
                }
            }
            for i in self.pieces.len()..self.vars {
                text.push_str(&format!("{{{{{}}}}} ", self.var(i)));
            }
            if self.vars > 0 {
                text.push_str(&format!("again {{{{{}}}}}", self.var(0)));
            }
            text
        }

        fn template(&self) -> Value {
            let mut components = Vec::new();
            if self.header {
                components.push(json!({"type": "HEADER", "format": "TEXT", "text": format!("Hello {{{{{}}}}}", self.header_var())}));
            }
            components.push(json!({"type": "BODY", "text": self.body()}));
            if self.button {
                components.push(json!({"type": "BUTTONS", "buttons": [
                    {"type": "URL", "text": "Open", "url": "https://x.example/{{1}}"}]}));
            }
            json!({"name": "t", "language": "en", "status": "APPROVED",
                "category": if self.auth { "AUTHENTICATION" } else { "MARKETING" },
                "parameter_format": if self.named { "NAMED" } else { "POSITIONAL" },
                "components": components})
        }

        fn header_var(&self) -> String {
            if self.named {
                "h".to_owned()
            } else {
                "1".to_owned()
            }
        }

        fn param(&self, name: String, text: &str) -> Value {
            if self.named {
                json!({"type": "text", "parameter_name": name, "text": text})
            } else {
                json!({"type": "text", "text": text})
            }
        }

        /// A send that fills every variable with `values` (cycled).
        fn send(&self, values: &[String]) -> Value {
            let value = |i: usize| values[i % values.len()].clone();
            let mut components = Vec::new();
            if self.header {
                components.push(json!({"type": "header", "parameters": [self.param(self.header_var(), &value(7))]}));
            }
            let body: Vec<Value> = (0..self.vars)
                .map(|i| self.param(self.var(i), &value(i)))
                .collect();
            components.push(json!({"type": "body", "parameters": body}));
            if self.button {
                components.push(json!({"type": "button", "sub_type": "url", "index": 0,
                    "parameters": [{"type": "text", "text": if self.auth && self.vars > 0 { value(0) } else { value(5) }}]}));
            }
            json!({"name": "t", "language": {"code": "en"}, "components": components})
        }
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z_ \n]{0,6}".prop_map(Value::from),
            prop::sample::select(vec![
                "text",
                "body",
                "header",
                "button",
                "url",
                "image",
                "currency",
                "payload",
                "quick_reply",
                "0",
                "1"
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::vec(
                    (
                        prop::sample::select(vec![
                            "type",
                            "parameters",
                            "components",
                            "text",
                            "sub_type",
                            "index",
                            "parameter_name",
                            "image",
                            "link",
                            "id",
                            "currency",
                            "fallback_value",
                            "payload"
                        ]),
                        inner
                    ),
                    0..5
                )
                .prop_map(|kv| Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    /// The codes Meta answers a template send with.
    const CODES: [u32; 5] = [100, 132000, 132005, 132012, 132018];

    proptest! {
        /// A send built for the template is accepted; each single mistake is refused with
        /// Meta's code for it.
        #[test]
        fn sends_built_for_the_template_pass_and_each_mistake_has_its_code(
            shape in shape(),
            values in prop::collection::vec("[a-zA-Z0-9][a-zA-Z0-9%]{0,3}( [a-zA-Z0-9%]{1,3}){0,2}", 1..4),
            mistake in 0usize..6,
        ) {
            let template = shape.template();
            prop_assert_eq!(variables(&shape.body()).len(), shape.vars);
            let good = shape.send(&values);
            prop_assert_eq!(check_template_send(&template, &good), Ok(()), "{} for {}", good, template);

            let mut bad = good.clone();
            let body = bad["components"].as_array_mut().unwrap().iter_mut()
                .find(|c| c["type"] == "body").unwrap();
            let params = body["parameters"].as_array_mut().unwrap();
            let expected = match mistake {
                0 if !params.is_empty() => { params.pop(); 132000 }
                1 if !params.is_empty() => { params[0]["text"] = "two\nlines".into(); 132018 }
                2 if !params.is_empty() => { params[0]["type"] = "image".into(); 132012 }
                3 if !params.is_empty() && !shape.auth => { params[0]["text"] = "x".repeat(1_100).into(); 132005 }
                4 if !params.is_empty() && shape.named => { params[0]["parameter_name"] = "nope".into(); 132000 }
                _ => { params.push(shape.param("extra".into(), "x")); 132000 }
            };
            let err = check_template_send(&template, &bad).expect_err("refused");
            prop_assert_eq!(err.code, expected, "{} for {}: {}", bad, template, err.message);
        }

        /// Any request against any demo template: accepted or refused with one of Meta's
        /// codes, never a panic.
        #[test]
        fn any_request_is_checked_without_panicking(request in any_json(), which in 0usize..16) {
            let templates = demo_templates();
            let template = &templates[which % templates.len()];
            for r in [request.clone(), json!({"components": [request.clone()]}), json!({"components": request})] {
                if let Err(e) = check_template_send(template, &r) {
                    prop_assert!(CODES.contains(&e.code), "{}: {}", e.code, e.message);
                }
            }
        }

        /// Variables are found in order of first use, once each, with their names trimmed.
        #[test]
        fn variables_follow_first_use(names in prop::collection::vec("[a-z_0-9]{1,4}", 0..6), filler in "[a-z {}]{0,4}") {
            let filler = filler.replace("{{", "{").replace("}}", "}");
            let text: String = names.iter().map(|n| format!("{filler}{{{{ {n} }}}}")).collect();
            let mut expected: Vec<String> = Vec::new();
            for n in &names {
                if !expected.contains(n) {
                    expected.push(n.clone());
                }
            }
            if !filler.contains('{') && !filler.contains('}') {
                prop_assert_eq!(variables(&text), expected);
            } else {
                prop_assert!(variables(&text).len() <= expected.len() + 1);
            }
        }

        /// A link is an http(s) URL exactly when it has the scheme and a host without spaces.
        #[test]
        fn http_urls(link in "(https?://|http:/|ftp://|)[a-z. /?#]{0,12}") {
            let host = link.strip_prefix("https://").or_else(|| link.strip_prefix("http://"))
                .map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
            prop_assert_eq!(is_http_url(&link), host.is_some_and(|h| !h.is_empty() && !h.contains(' ')));
        }
    }
}
