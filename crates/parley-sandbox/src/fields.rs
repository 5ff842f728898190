//! Graph field selection, as Meta does it on every node and edge the sandbox serves.
//!
//! - `fields=a,b,c`: exactly those fields (plus `id`); without `fields`, the node's default
//!   fields. A field Meta does not document for the node is `(#100) Tried accessing
//!   nonexisting field (x) on node type (Y)`; a documented field the sandbox has no value
//!   for is simply absent, as on Meta (see [`Kind::fields`] for the catalogue).
//! - Field expansion: `phone_numbers{id,display_phone_number}`, nested to any depth, on
//!   edges (a paged `{"data":[…],"paging":…}` object) and on object-valued fields
//!   (`throughput{level}`: the listed keys of the object, each element of an array of
//!   objects).
//! - Modifiers on edges: `.limit(n)` (page size) and `.summary(true|total_count)`, before or
//!   after the braces: `message_templates.limit(2).summary(total_count){name}`. Any other
//!   modifier, or a modifier on a non-edge field, is error 100.
//! - List edges (`GET /{waba}/phone_numbers`, `/{waba}/message_templates`,
//!   `/{business}/owned_whatsapp_business_accounts`, …): Meta's cursor paging
//!   (`paging.cursors.before/after` always, `paging.next` only when there is more,
//!   `paging.previous` only when there is less), `limit` (default 25), `after`/`before`, and
//!   `summary=true|total_count` → `"summary": {"total_count": N, …}`.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::errors::GraphError;
use crate::state::State as World;

const DEFAULT_PAGE: usize = 25;
const MAX_PAGE: usize = 1000;
/// Templates per WABA (Meta's default, META_2026.md §9.4): `message_template_limit` in the
/// summary of `message_templates`.
const TEMPLATE_LIMIT: usize = 250;
/// Date of the values Meta has and the sandbox does not track (creation and update times).
const DEFAULT_TIME: &str = "2025-01-01T00:00:00+0000";

/// The node types the sandbox serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Phone,
    Waba,
    Business,
    Template,
    Profile,
}

/// What an edge lists: nodes of a kind, or plain rows (no node type of their own here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EdgeOf {
    Nodes(Kind),
    Rows,
}

impl Kind {
    /// Meta's node type name, as error 100 names it.
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            Kind::Phone => "WhatsAppBusinessPhoneNumber",
            Kind::Waba => "WhatsAppBusinessAccount",
            Kind::Business => "Business",
            Kind::Template => "WhatsAppMessageTemplate",
            Kind::Profile => "WhatsAppBusinessProfile",
        }
    }

    /// Every field Meta documents for the node: the OpenAPI spec's schemas and `fields`
    /// lists for it (`shared/meta/business-messaging-api_v23.0.yaml`), the fields named in
    /// Meta's docs since (`META_2026.md` §4, §9.2, §9.5) and Meta's Graph reference for the
    /// node. Edges are listed too (see [`Kind::edge`]).
    pub(crate) fn fields(self) -> &'static [&'static str] {
        match self {
            Kind::Phone => &[
                "id",
                "display_phone_number",
                "verified_name",
                "quality_rating",
                "code_verification_status",
                "name_status",
                "status",
                "country_code",
                "country_dial_code",
                "unified_cert_status",
                "account_mode",
                "host_platform",
                "messaging_limit_tier",
                "is_official_business_account",
                "username",
                "certificate",
                "new_certificate",
                "whatsapp_business_manager_messaging_limit",
                "throughput",
                "is_on_biz_app",
                "platform_type",
                "is_pin_enabled",
                "quality_score",
                "new_name_status",
                "search_visibility",
                "health_status",
                "last_onboarded_time",
                "webhook_configuration",
                "conversational_automation",
                "is_preverified_number",
                "whatsapp_business_profile",
            ],
            Kind::Waba => &[
                "id",
                "name",
                "currency",
                "timezone_id",
                "message_template_namespace",
                "account_review_status",
                "business_verification_status",
                "country",
                "ownership_type",
                "primary_business_location",
                "purchase_order_number",
                "on_behalf_of_business_info",
                "is_enabled_for_insights",
                "status",
                "creation_time",
                "health_status",
                "owner_business",
                "owner_business_info",
                "primary_funding_id",
                "linked_commerce_account",
                "whatsapp_business_manager_messaging_limit",
                // META_2026 §7: the Cloud API marketing switch and the MM API onboarding.
                "disable_marketing_messages_on_cloud_api",
                "marketing_messages_onboarding_status",
                "phone_numbers",
                "message_templates",
                "subscribed_apps",
                "schedules",
                "audiences",
                "dcc_config",
                // Meta docs "Analytics" (META_API §2.7, META_2026 §5.4): `analytics.rs`.
                "analytics",
                "pricing_analytics",
                "conversation_analytics",
            ],
            Kind::Business => &[
                "id",
                "name",
                "timezone_id",
                "verification_status",
                "created_time",
                "updated_time",
                "primary_page",
                "two_factor_type",
                "block_offline_analytics",
                "created_by",
                "updated_by",
                "extended_updated_time",
                "is_hidden",
                "link",
                "payment_account_id",
                "profile_picture_uri",
                "vertical",
                "vertical_id",
                "whatsapp_business_manager_messaging_limit",
                "owned_whatsapp_business_accounts",
                "client_whatsapp_business_accounts",
            ],
            Kind::Template => &[
                "id",
                "name",
                "language",
                "category",
                "status",
                "components",
                "parameter_format",
                "sub_category",
                "quality_score",
                "rejected_reason",
                "previous_category",
                "correct_category",
                "message_send_ttl_seconds",
                "cta_url_link_tracking_opted_out",
                "library_template_name",
            ],
            Kind::Profile => &[
                "id",
                "messaging_product",
                "account_name",
                "about",
                "address",
                "description",
                "email",
                "profile_picture_url",
                "profile_picture_handle",
                "websites",
                "vertical",
            ],
        }
    }

    /// The fields returned without `fields=`.
    pub(crate) fn defaults(self) -> &'static [&'static str] {
        match self {
            Kind::Phone => &[
                "id",
                "display_phone_number",
                "verified_name",
                "quality_rating",
                "code_verification_status",
                "name_status",
                "platform_type",
                "throughput",
                "status",
                "whatsapp_business_manager_messaging_limit",
            ],
            Kind::Waba => &[
                "id",
                "name",
                "currency",
                "timezone_id",
                "message_template_namespace",
                "account_review_status",
                "business_verification_status",
            ],
            Kind::Business => &["id", "name"],
            Kind::Template => &[
                "id",
                "name",
                "parameter_format",
                "components",
                "language",
                "status",
                "category",
                "sub_category",
                "message_send_ttl_seconds",
                "rejected_reason",
            ],
            Kind::Profile => &[
                "messaging_product",
                "about",
                "address",
                "description",
                "email",
                "profile_picture_url",
                "websites",
                "vertical",
            ],
        }
    }

    fn edge(self, field: &str) -> Option<EdgeOf> {
        Some(match (self, field) {
            (Kind::Phone, "whatsapp_business_profile") => EdgeOf::Nodes(Kind::Profile),
            (Kind::Waba, "phone_numbers") => EdgeOf::Nodes(Kind::Phone),
            (Kind::Waba, "message_templates") => EdgeOf::Nodes(Kind::Template),
            (Kind::Waba, "subscribed_apps" | "schedules" | "audiences" | "dcc_config") => {
                EdgeOf::Rows
            }
            (
                Kind::Business,
                "owned_whatsapp_business_accounts" | "client_whatsapp_business_accounts",
            ) => EdgeOf::Nodes(Kind::Waba),
            _ => return None,
        })
    }

    /// The kind of the node with this id, if the sandbox has one.
    pub(crate) fn of(state: &World, id: &str) -> Option<Kind> {
        if state.phone(id).is_some() {
            Some(Kind::Phone)
        } else if state.waba(id).is_some() {
            Some(Kind::Waba)
        } else if state.business(id).is_some() {
            Some(Kind::Business)
        } else if state.template(id).is_some() {
            Some(Kind::Template)
        } else if phone_of_profile(state, id).is_some() {
            Some(Kind::Profile)
        } else {
            None
        }
    }
}

/// Whether `edge` is a list edge of `kind` served through field selection.
pub(crate) fn is_edge(kind: Kind, edge: &str) -> bool {
    kind.edge(edge).is_some()
}

// ---------------------------------------------------------------------------------------
// The `fields` syntax.

/// `summary=` on an edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Summary {
    /// `summary=true`: every summary field of the edge.
    All,
    /// `summary=total_count`.
    TotalCount,
}

impl Summary {
    /// `true`, `1`, `total_count` (any case); `false`/`0`/empty: none. Anything else is 100.
    pub(crate) fn parse(raw: &str) -> Result<Option<Summary>, GraphError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Some(Summary::All)),
            "total_count" => Ok(Some(Summary::TotalCount)),
            "false" | "0" | "" => Ok(None),
            other => Err(GraphError::invalid_param(format!(
                "Invalid summary field ({other}): use true or total_count."
            ))),
        }
    }
}

/// One requested field: `name[.limit(n)][.summary(x)][{sub,fields}]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldSpec {
    pub name: String,
    pub limit: Option<usize>,
    pub summary: Option<Summary>,
    pub sub: Option<Vec<FieldSpec>>,
    /// The analytics fields' parameters (`start(…)`, `granularity(…)`, `dimensions([…])`, …:
    /// [`crate::analytics::PARAMS`]), name → raw argument, in request order.
    pub params: Vec<(String, String)>,
}

impl std::fmt::Display for FieldSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if let Some(limit) = self.limit {
            write!(f, ".limit({limit})")?;
        }
        match self.summary {
            Some(Summary::All) => f.write_str(".summary(true)")?,
            Some(Summary::TotalCount) => f.write_str(".summary(total_count)")?,
            None => {}
        }
        for (name, arg) in &self.params {
            write!(f, ".{name}({arg})")?;
        }
        if let Some(sub) = &self.sub {
            write!(f, "{{{}}}", join(sub))?;
        }
        Ok(())
    }
}

fn join(specs: &[FieldSpec]) -> String {
    specs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a `fields` value. An empty value (or only commas) is `None`: the defaults.
pub(crate) fn parse(raw: &str) -> Result<Option<Vec<FieldSpec>>, GraphError> {
    let mut parser = Parser {
        text: raw,
        chars: raw.char_indices().collect(),
        pos: 0,
    };
    let specs = parser.list(0)?;
    if parser.pos < parser.chars.len() {
        return Err(parser.error("Expected end of string"));
    }
    Ok((!specs.is_empty()).then_some(specs))
}

struct Parser<'a> {
    text: &'a str,
    chars: Vec<(usize, char)>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|(_, c)| *c)
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn error(&self, what: &str) -> GraphError {
        let at = self.pos;
        let found = self
            .peek()
            .map_or_else(|| "end of string".to_owned(), |c| format!("\"{c}\""));
        GraphError::invalid_param(format!(
            "Syntax error \"{what} instead of {found}.\" at character {at}: {}",
            self.text
        ))
    }

    /// Comma-separated fields until `}` (depth > 0) or the end.
    fn list(&mut self, depth: usize) -> Result<Vec<FieldSpec>, GraphError> {
        if depth > 8 {
            return Err(self.error("Field expansion nested too deeply"));
        }
        let mut out: Vec<FieldSpec> = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                None => return Ok(out),
                Some('}') if depth > 0 => return Ok(out),
                Some(',') => {
                    self.pos += 1;
                    continue;
                }
                _ => {}
            }
            let spec = self.field(depth)?;
            match out.iter_mut().find(|s| s.name == spec.name) {
                Some(existing) => *existing = spec,
                None => out.push(spec),
            }
            self.skip_space();
            match self.peek() {
                None | Some(',') => {}
                Some('}') if depth > 0 => {}
                _ => return Err(self.error("Expected \",\"")),
            }
        }
    }

    fn name(&mut self) -> Result<String, GraphError> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("Expected a field name"));
        }
        Ok(self.chars[start..self.pos].iter().map(|(_, c)| c).collect())
    }

    fn field(&mut self, depth: usize) -> Result<FieldSpec, GraphError> {
        let name = self.name()?;
        let mut spec = FieldSpec {
            name,
            limit: None,
            summary: None,
            sub: None,
            params: Vec::new(),
        };
        loop {
            self.skip_space();
            match self.peek() {
                Some('.') => {
                    self.pos += 1;
                    self.modifier(&mut spec)?;
                }
                Some('{') if spec.sub.is_none() => {
                    self.pos += 1;
                    let sub = self.list(depth + 1)?;
                    self.skip_space();
                    if self.peek() != Some('}') {
                        return Err(self.error("Expected \"}\""));
                    }
                    self.pos += 1;
                    if sub.is_empty() {
                        return Err(self.error("Expected a field name"));
                    }
                    spec.sub = Some(sub);
                }
                _ => return Ok(spec),
            }
        }
    }

    fn modifier(&mut self, spec: &mut FieldSpec) -> Result<(), GraphError> {
        let name = self.name()?;
        if self.peek() != Some('(') {
            return Err(self.error("Expected \"(\""));
        }
        self.pos += 1;
        let start = self.pos;
        while self.peek().is_some_and(|c| c != ')') {
            self.pos += 1;
        }
        if self.peek() != Some(')') {
            return Err(self.error("Expected \")\""));
        }
        let arg: String = self.chars[start..self.pos].iter().map(|(_, c)| c).collect();
        self.pos += 1;
        match name.as_str() {
            "limit" => match arg.trim().parse::<usize>() {
                Ok(n) if n >= 1 => spec.limit = Some(n.min(MAX_PAGE)),
                _ => {
                    return Err(GraphError::invalid_param(format!(
                        "Param limit must be a positive integer - got {arg}."
                    )));
                }
            },
            "summary" => spec.summary = Summary::parse(&arg)?,
            p if crate::analytics::PARAMS.contains(&p) => {
                spec.params.retain(|(n, _)| n != p);
                spec.params.push((p.to_owned(), arg));
            }
            other => {
                return Err(GraphError::invalid_param(format!(
                    "Unsupported field modifier ({other}) on field ({}): the sandbox supports limit and summary.",
                    spec.name
                )));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Selection.

/// Where the request came from: what `paging.next` links are built from.
pub(crate) struct Ctx<'a> {
    pub host: &'a str,
    pub version: &'a str,
    /// The virtual clock: analytics count only what happened by then.
    pub now_ms: i64,
}

/// How a list edge is asked for: page, cursors, summary, and extra query to keep in links.
#[derive(Default)]
pub(crate) struct PageRequest<'a> {
    pub limit: Option<usize>,
    pub after: Option<&'a str>,
    pub before: Option<&'a str>,
    pub summary: Option<Summary>,
    /// `(key, value)` pairs repeated in `paging.next`/`previous` (filters).
    pub keep: Vec<(&'a str, String)>,
}

/// `GET /{id}` with `fields`: the node as Meta answers it.
pub(crate) fn node(
    state: &World,
    kind: Kind,
    id: &str,
    fields: Option<&[FieldSpec]>,
    ctx: &Ctx<'_>,
) -> Result<Value, GraphError> {
    let values = values(state, kind, id).ok_or_else(|| GraphError::unsupported("get", id))?;
    let mut out = Map::new();
    match fields {
        None => {
            for name in kind.defaults() {
                if let Some(value) = values.get(*name).filter(|v| !v.is_null()) {
                    out.insert((*name).to_owned(), value.clone());
                }
            }
        }
        Some(fields) => {
            for spec in fields {
                if !kind.fields().contains(&spec.name.as_str()) {
                    return Err(GraphError::nonexisting_field(&spec.name, kind.type_name()));
                }
                if kind == Kind::Waba && crate::analytics::FIELDS.contains(&spec.name.as_str()) {
                    let value = crate::analytics::field(state, id, spec, ctx.now_ms)?;
                    out.insert(spec.name.clone(), value);
                    continue;
                }
                if !spec.params.is_empty() {
                    return Err(GraphError::invalid_param(format!(
                        "Unsupported field modifier ({}) on field ({}): only the analytics fields take it.",
                        spec.params[0].0, spec.name
                    )));
                }
                if let Some(edge) = kind.edge(&spec.name) {
                    let page = PageRequest {
                        limit: spec.limit,
                        summary: spec.summary,
                        ..PageRequest::default()
                    };
                    let value = edge_page(
                        state,
                        kind,
                        id,
                        &spec.name,
                        edge,
                        spec.sub.as_deref(),
                        &page,
                        ctx,
                        None,
                    )?;
                    out.insert(spec.name.clone(), value);
                    continue;
                }
                if spec.limit.is_some() || spec.summary.is_some() {
                    return Err(GraphError::invalid_param(format!(
                        "Field modifiers (limit, summary) apply to edges only; ({}) is a field of {}.",
                        spec.name,
                        kind.type_name()
                    )));
                }
                if let Some(value) = values.get(&spec.name).filter(|v| !v.is_null()) {
                    let value = match &spec.sub {
                        Some(sub) => sub_select(value, sub, &spec.name, kind)?,
                        None => value.clone(),
                    };
                    out.insert(spec.name.clone(), value);
                }
            }
            if let Some(id) = values.get("id").filter(|v| !v.is_null()) {
                out.insert("id".to_owned(), id.clone());
            }
        }
    }
    Ok(Value::Object(out))
}

/// A list edge of `parent` (`GET /{parent}/{edge}` or field expansion), one page.
pub(crate) fn edge(
    state: &World,
    parent: Kind,
    parent_id: &str,
    edge_name: &str,
    fields: Option<&[FieldSpec]>,
    page: &PageRequest<'_>,
    ctx: &Ctx<'_>,
) -> Result<Value, GraphError> {
    let Some(edge) = parent.edge(edge_name) else {
        return Err(GraphError::unsupported("get", parent_id));
    };
    edge_page(
        state, parent, parent_id, edge_name, edge, fields, page, ctx, None,
    )
}

/// A node edge listing only `ids` (the edge's own filters applied by the caller), one page.
#[allow(clippy::too_many_arguments)]
pub(crate) fn edge_of(
    state: &World,
    parent: Kind,
    parent_id: &str,
    edge_name: &str,
    ids: Vec<String>,
    fields: Option<&[FieldSpec]>,
    page: &PageRequest<'_>,
    ctx: &Ctx<'_>,
) -> Result<Value, GraphError> {
    let Some(edge) = parent.edge(edge_name) else {
        return Err(GraphError::unsupported("get", parent_id));
    };
    edge_page(
        state,
        parent,
        parent_id,
        edge_name,
        edge,
        fields,
        page,
        ctx,
        Some(ids),
    )
}

#[allow(clippy::too_many_arguments)]
fn edge_page(
    state: &World,
    parent: Kind,
    parent_id: &str,
    edge_name: &str,
    edge: EdgeOf,
    fields: Option<&[FieldSpec]>,
    page: &PageRequest<'_>,
    ctx: &Ctx<'_>,
    ids: Option<Vec<String>>,
) -> Result<Value, GraphError> {
    let (rows, paged) = match edge {
        EdgeOf::Nodes(kind) => {
            let ids = ids.unwrap_or_else(|| edge_ids(state, parent, parent_id, edge_name));
            let mut rows = Vec::with_capacity(ids.len());
            for id in &ids {
                let mut row = node(state, kind, id, fields, ctx)?;
                // Meta's profile edge rows carry no `id` unless it is asked for.
                let asked = fields.is_some_and(|f| f.iter().any(|s| s.name == "id"));
                if kind == Kind::Profile
                    && !asked
                    && let Value::Object(map) = &mut row
                {
                    map.remove("id");
                }
                rows.push(row);
            }
            // The profile edge is Meta's single-row `{"data":[…]}`, without paging.
            (rows, kind != Kind::Profile)
        }
        EdgeOf::Rows => {
            let rows = edge_rows(state, parent_id, edge_name);
            let rows = match fields {
                None => rows,
                Some(fields) => rows
                    .iter()
                    .map(|row| sub_select(row, fields, edge_name, parent))
                    .collect::<Result<_, _>>()?,
            };
            (rows, false)
        }
    };
    let total = rows.len();
    let mut answer = if paged {
        paginate(rows, parent_id, edge_name, fields, page, ctx)?
    } else {
        json!({ "data": rows })
    };
    if let Some(summary) = page.summary {
        let mut s = json!({ "total_count": total });
        if summary == Summary::All && edge_name == "message_templates" {
            s["message_template_count"] = json!(total);
            s["message_template_limit"] = json!(TEMPLATE_LIMIT);
            s["are_translations_complete"] = json!(true);
        }
        answer["summary"] = s;
    }
    Ok(answer)
}

/// The listed keys of an object-valued field (of each object in an array).
fn sub_select(
    value: &Value,
    sub: &[FieldSpec],
    field: &str,
    kind: Kind,
) -> Result<Value, GraphError> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| sub_select(item, sub, field, kind))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(object) => {
            let mut out = Map::new();
            for spec in sub {
                match object.get(&spec.name) {
                    Some(Value::Null) | None => {}
                    Some(inner) => {
                        let inner = match &spec.sub {
                            Some(deeper) => sub_select(inner, deeper, &spec.name, kind)?,
                            None => inner.clone(),
                        };
                        out.insert(spec.name.clone(), inner);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        _ => Err(GraphError::invalid_param(format!(
            "Field ({field}) of node type ({}) has no subfields.",
            kind.type_name()
        ))),
    }
}

fn encode_cursor(index: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("cursor:{index}"))
}

pub(crate) fn decode_cursor(cursor: &str) -> Result<usize, GraphError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim_end_matches('='))
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|s| s.strip_prefix("cursor:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| GraphError::invalid_param(format!("Invalid cursor '{cursor}'.")))
}

/// Meta's cursor paging: `{"data":[…],"paging":{"cursors":{"before","after"},"next"?,"previous"?}}`.
fn paginate(
    rows: Vec<Value>,
    parent_id: &str,
    edge_name: &str,
    fields: Option<&[FieldSpec]>,
    page: &PageRequest<'_>,
    ctx: &Ctx<'_>,
) -> Result<Value, GraphError> {
    let limit = page.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let total = rows.len();
    let (start, end) = if let Some(after) = page.after.filter(|s| !s.is_empty()) {
        let start = decode_cursor(after)?.saturating_add(1).min(total);
        (start, start.saturating_add(limit).min(total))
    } else if let Some(before) = page.before.filter(|s| !s.is_empty()) {
        let end = decode_cursor(before)?.min(total);
        (end.saturating_sub(limit), end)
    } else {
        (0, limit.min(total))
    };
    let data: Vec<Value> = rows.into_iter().skip(start).take(end - start).collect();
    if data.is_empty() {
        return Ok(json!({ "data": [] }));
    }
    let link = |cursor_key: &str, cursor: &str| {
        let mut query = format!("limit={limit}&{cursor_key}={}", encode_query(cursor));
        if let Some(fields) = fields {
            query.push_str(&format!("&fields={}", encode_query(&join(fields))));
        }
        for (key, value) in &page.keep {
            query.push_str(&format!("&{key}={}", encode_query(value)));
        }
        match page.summary {
            Some(Summary::All) => query.push_str("&summary=true"),
            Some(Summary::TotalCount) => query.push_str("&summary=total_count"),
            None => {}
        }
        format!(
            "http://{}/{}/{parent_id}/{edge_name}?{query}",
            ctx.host, ctx.version
        )
    };
    let before = encode_cursor(start);
    let after = encode_cursor(end - 1);
    let mut paging = json!({ "cursors": { "before": before, "after": after } });
    if end < total {
        paging["next"] = json!(link("after", &after));
    }
    if start > 0 {
        paging["previous"] = json!(link("before", &before));
    }
    Ok(json!({ "data": data, "paging": paging }))
}

fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Values: what each node holds, from the sandbox's state or Meta-shaped defaults.

/// The id of a number's business profile node (`GET /{profile-id}`): the number's id
/// behind a `7`, so it never collides with the 15-digit ids the sandbox mints.
pub(crate) fn profile_id(phone_id: &str) -> String {
    format!("7{phone_id}")
}

fn phone_of_profile<'a>(state: &World, id: &'a str) -> Option<&'a str> {
    let phone = id.strip_prefix('7')?;
    state.phone(phone).is_some().then_some(phone)
}

/// A number's business profile as stored, or the default every new number starts with.
pub(crate) fn profile(state: &World, phone_id: &str) -> Value {
    state
        .profiles
        .get(phone_id)
        .cloned()
        .unwrap_or_else(default_profile)
}

/// The business profile of a number nobody has edited (also `onboarding::business_profile`).
pub(crate) fn default_profile() -> Value {
    json!({
        "messaging_product": "whatsapp",
        "about": "Hello from the Parley sandbox",
        "address": "",
        "description": "",
        "email": "",
        "profile_picture_url": "",
        "websites": [],
        "vertical": "OTHER",
    })
}

/// The portfolio's messaging limit (`whatsapp_business_manager_messaging_limit`): the highest
/// tier among its numbers (what `limits.rs` enforces); `TIER_250` for a portfolio without one.
fn portfolio_tier(business: &crate::config::BusinessSeed) -> String {
    let mut best: Option<(&str, Option<i64>)> = None;
    for number in business.wabas.iter().flat_map(|w| w.phone_numbers.iter()) {
        let limit = crate::limits::tier_limit(&number.messaging_limit);
        let better = match best {
            None => true,
            Some((_, None)) => false,
            Some((_, Some(have))) => limit.is_none_or(|l| l > have),
        };
        if better {
            best = Some((number.messaging_limit.as_str(), limit));
        }
    }
    best.map_or("TIER_250", |(tier, _)| tier).to_owned()
}

/// ISO country of a calling code, for the few codes the sandbox's numbers use.
fn country_of_dial_code(code: &str) -> Option<&'static str> {
    Some(match code {
        "1" => "US",
        "7" => "RU",
        "31" => "NL",
        "33" => "FR",
        "34" => "ES",
        "39" => "IT",
        "41" => "CH",
        "43" => "AT",
        "44" => "GB",
        "45" => "DK",
        "46" => "SE",
        "47" => "NO",
        "48" => "PL",
        "49" => "DE",
        "52" => "MX",
        "54" => "AR",
        "55" => "BR",
        "61" => "AU",
        "62" => "ID",
        "65" => "SG",
        "81" => "JP",
        "91" => "IN",
        "234" => "NG",
        "351" => "PT",
        "353" => "IE",
        "971" => "AE",
        _ => return None,
    })
}

fn values(state: &World, kind: Kind, id: &str) -> Option<Map<String, Value>> {
    let value = match kind {
        Kind::Phone => phone_values(state, id)?,
        Kind::Waba => waba_values(state, id)?,
        Kind::Business => business_values(state, id)?,
        Kind::Template => template_values(state.template(id)?),
        Kind::Profile => {
            let phone = phone_of_profile(state, id)?;
            profile_values(state, phone)
        }
    };
    match value {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn health(entities: &[(&str, &str)]) -> Value {
    json!({
        "can_send_message": "AVAILABLE",
        "entities": entities.iter().map(|(kind, id)| json!({
            "entity_type": kind, "id": id, "can_send_message": "AVAILABLE"
        })).collect::<Vec<_>>(),
    })
}

fn phone_values(state: &World, id: &str) -> Option<Value> {
    let found = state.phone(id)?;
    let p = found.phone;
    let business = state.business_of_waba(&found.waba.id)?;
    let dial_code: String = p
        .display_phone_number
        .trim_start_matches('+')
        .split([' ', '-'])
        .next()
        .unwrap_or("")
        .to_owned();
    // Meta names only STANDARD; "HIGH" for upgraded numbers is our guess (META_API.md §2.3).
    let level = if p.throughput_mps > 80 {
        "HIGH"
    } else {
        "STANDARD"
    };
    let tier = portfolio_tier(business);
    let unified = match p.name_status.as_str() {
        "PENDING_REVIEW" => "NAME_PENDING_REVIEW",
        "DECLINED" | "EXPIRED" => "NAME_NOT_APPROVED",
        _ => "APPROVED",
    };
    let certificate = base64::engine::general_purpose::STANDARD
        .encode(format!("sandbox-certificate:{}:{}", p.id, p.verified_name));
    Some(json!({
        "id": p.id,
        "display_phone_number": p.display_phone_number,
        "verified_name": p.verified_name,
        "quality_rating": p.quality_rating,
        "code_verification_status": p.code_verification_status,
        "name_status": p.name_status,
        "new_name_status": "NONE",
        "status": p.status,
        "country_dial_code": dial_code,
        "country_code": country_of_dial_code(&dial_code).or(business.country.as_deref()),
        "unified_cert_status": unified,
        "account_mode": "LIVE",
        "host_platform": "CLOUD_API",
        "platform_type": "CLOUD_API",
        "is_on_biz_app": p.is_on_biz_app || state.coexistence.contains_key(&p.id),
        "throughput": {"level": level},
        "whatsapp_business_manager_messaging_limit": tier,
        // Deprecated (META_2026.md §4): answered when asked for, never by default.
        "messaging_limit_tier": tier,
        "is_official_business_account": false,
        "is_pin_enabled": state.pins.contains_key(id),
        "is_preverified_number": false,
        "quality_score": {"score": p.quality_rating},
        "search_visibility": "VISIBLE",
        "certificate": certificate,
        "health_status": health(&[
            ("PHONE_NUMBER", p.id.as_str()),
            ("WABA", found.waba.id.as_str()),
            ("BUSINESS", business.id.as_str()),
        ]),
        "last_onboarded_time": DEFAULT_TIME,
        "webhook_configuration": {"application": state.config.webhook_url.clone().unwrap_or_default()},
        "conversational_automation": {
            "enable_welcome_message": false, "prompts": [], "commands": []
        },
    }))
}

fn waba_values(state: &World, id: &str) -> Option<Value> {
    let waba = state.waba(id)?;
    let business = state.business_of_waba(id)?;
    let country = business.country.clone().unwrap_or_else(|| "US".to_owned());
    let portfolio = json!({"id": business.id, "name": business.name});
    Some(json!({
        "id": waba.id,
        "name": waba.name,
        "currency": waba.currency,
        "timezone_id": waba.timezone_id,
        "message_template_namespace": waba.message_template_namespace,
        "account_review_status": waba.account_review_status,
        "business_verification_status": business.verification_status,
        "country": country,
        "primary_business_location": country,
        "ownership_type": "CLIENT_OWNED",
        "on_behalf_of_business_info": {
            "id": business.id, "name": business.name, "status": "APPROVED", "type": "SELF"
        },
        "owner_business_info": portfolio,
        "owner_business": portfolio,
        "is_enabled_for_insights": false,
        "status": "ACTIVE",
        "creation_time": DEFAULT_TIME,
        "primary_funding_id": format!("{}01", waba.id),
        "health_status": health(&[("WABA", waba.id.as_str()), ("BUSINESS", business.id.as_str())]),
        "whatsapp_business_manager_messaging_limit": portfolio_tier(business),
    }))
    .map(|mut object| {
        if let (Some(o), Value::Object(flags)) = (
            object.as_object_mut(),
            crate::consent::waba_fields(state, &waba.id),
        ) {
            o.extend(flags);
        }
        object
    })
}

fn business_values(state: &World, id: &str) -> Option<Value> {
    let b = state.business(id)?;
    let person = json!({"id": "10222270944537964", "name": "Alex Example"});
    Some(json!({
        "id": b.id,
        "name": b.name,
        "timezone_id": 1,
        "verification_status": b.verification_status,
        "created_time": DEFAULT_TIME,
        "updated_time": DEFAULT_TIME,
        "extended_updated_time": DEFAULT_TIME,
        "created_by": person,
        "updated_by": person,
        "two_factor_type": "none",
        "block_offline_analytics": false,
        "is_hidden": false,
        "link": format!("https://business.facebook.com/latest/settings/business_info?business_id={}", b.id),
        "profile_picture_uri": "https://scontent.xx.fbcdn.net/sandbox/business.png",
        "vertical": "OTHER",
        "vertical_id": 0,
        "whatsapp_business_manager_messaging_limit": portfolio_tier(b),
    }))
}

fn template_values(stored: &Value) -> Value {
    let mut t = stored.clone();
    if let Value::Object(map) = &mut t {
        map.entry("parameter_format").or_insert(json!("POSITIONAL"));
        map.entry("rejected_reason").or_insert(json!("NONE"));
        map.entry("quality_score")
            .or_insert(json!({"score": "UNKNOWN"}));
        map.entry("cta_url_link_tracking_opted_out")
            .or_insert(json!(false));
    }
    t
}

fn profile_values(state: &World, phone_id: &str) -> Value {
    let mut profile = profile(state, phone_id);
    if let Value::Object(map) = &mut profile {
        map.insert("id".to_owned(), json!(profile_id(phone_id)));
        if let Some(phone) = state.phone(phone_id) {
            map.entry("account_name")
                .or_insert(json!(phone.phone.verified_name));
        }
    }
    profile
}

/// The ids a node edge lists, in Meta's order.
fn edge_ids(state: &World, parent: Kind, parent_id: &str, edge: &str) -> Vec<String> {
    match (parent, edge) {
        (Kind::Phone, "whatsapp_business_profile") => vec![profile_id(parent_id)],
        (Kind::Waba, "phone_numbers") => state
            .waba(parent_id)
            .map(|w| w.phone_numbers.iter().map(|p| p.id.clone()).collect())
            .unwrap_or_default(),
        (Kind::Waba, "message_templates") => state
            .waba(parent_id)
            .map(|w| {
                w.templates
                    .iter()
                    .filter_map(|t| t.get("id").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        // The sandbox's portfolios own their WABAs; a client's WABAs are the same list.
        (Kind::Business, _) => state
            .business(parent_id)
            .map(|b| b.wabas.iter().map(|w| w.id.clone()).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Rows of edges without a node type here: this app's subscription, and empty lists for
/// what the sandbox does not model (schedules, audiences, DCC configuration).
fn edge_rows(state: &World, waba_id: &str, edge: &str) -> Vec<Value> {
    match edge {
        "subscribed_apps" => state
            .subscriptions
            .get(waba_id)
            .cloned()
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(specs: &[FieldSpec]) -> Vec<&str> {
        specs.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn parses_plain_nested_and_modifiers() {
        let specs = parse("id, name ,phone_numbers.limit(2){id,throughput{level}},message_templates{name}.summary(total_count)")
            .expect("parses")
            .expect("some");
        assert_eq!(
            names(&specs),
            ["id", "name", "phone_numbers", "message_templates"]
        );
        assert_eq!(specs[2].limit, Some(2));
        let sub = specs[2].sub.as_ref().expect("sub");
        assert_eq!(names(sub), ["id", "throughput"]);
        assert_eq!(names(sub[1].sub.as_ref().expect("deeper")), ["level"]);
        assert_eq!(specs[3].summary, Some(Summary::TotalCount));
        assert_eq!(
            specs[2].to_string(),
            "phone_numbers.limit(2){id,throughput{level}}"
        );
    }

    #[test]
    fn empty_is_defaults() {
        assert_eq!(parse("").expect("parses"), None);
        assert_eq!(parse(" , ").expect("parses"), None);
    }

    #[test]
    fn syntax_errors_are_100() {
        for bad in [
            "a{b",
            "a}",
            "a{}",
            "a.limit(x)",
            "a.limit(0)",
            "a.foo(1)",
            "a b",
            "a.(1)",
            "a.limit(2",
            "a.limit(99999999999999999999999)",
            "名前",
            "a{b{c{d{e{f{g{h{i{j{k}}}}}}}}}}",
            "{",
            ".",
        ] {
            let err = parse(bad).expect_err(bad);
            assert_eq!(err.code, 100, "{bad}");
        }
    }

    #[test]
    fn every_default_is_a_field() {
        for kind in [
            Kind::Phone,
            Kind::Waba,
            Kind::Business,
            Kind::Template,
            Kind::Profile,
        ] {
            for name in kind.defaults() {
                assert!(kind.fields().contains(name), "{kind:?} {name}");
            }
        }
    }

    #[test]
    fn deprecated_tier_is_never_a_default() {
        assert!(!Kind::Phone.defaults().contains(&"messaging_limit_tier"));
    }
}
