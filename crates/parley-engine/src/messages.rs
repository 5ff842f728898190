//! Accepting a single send from the API: every check Meta would make that Parley can make
//! first (number format, template approved, variables, 24 h window), then one committed
//! `queued` row. Once this returns Ok, the message is never lost.

use std::borrow::Cow;

use parley_domain::{
    ApplicationId, BoundTemplate, Bsuid, DynamicText, E164, Limit, MessageContent, MessageId,
    MessageState, PhoneNumberId, SkipReason, TagLookup, TagValue, Tags, TemplateCategory,
    VARIABLE_TOO_LONG, VariableInput, Wamid, in_service_window, is_bsuid_address,
};
use parley_store::{ContactRecord, InsertOutcome, NewMessage};

use crate::clock::to_datetime;
use crate::{Engine, EngineError, ErrorKind};

/// Meta's limit for a text message body.
pub const MAX_TEXT_CHARS: usize = 4096;

#[derive(Debug, Clone)]
pub struct SendRequest {
    pub to: String,
    pub body: SendBody,
    /// Which of the application's numbers sends; optional when it has exactly one.
    pub phone_number_id: Option<PhoneNumberId>,
    /// wamid of the message this one replies to.
    pub reply_to: Option<Wamid>,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone)]
pub enum SendBody {
    Template {
        name: String,
        language: String,
        variables: VariableInput,
    },
    Text {
        text: String,
        preview_url: bool,
    },
    /// Inside the window: an image, video, audio, document or sticker by Meta's media id (see
    /// `Engine::reply`, which uploads) or by a public `https` link.
    Media {
        media_type: String,
        id: Option<String>,
        link: Option<String>,
        caption: Option<String>,
        filename: Option<String>,
        mime_type: Option<String>,
    },
    /// Inside the window: a reaction to a message of the thread (empty emoji: removed).
    Reaction {
        message_id: String,
        emoji: String,
    },
}

/// Meta's longest media caption.
pub const MAX_CAPTION_CHARS: usize = 1024;
/// The media types a send can carry.
pub const MEDIA_TYPES: [&str; 5] = ["image", "video", "audio", "document", "sticker"];

/// Per-node locks that make one contact's single sends go through `insert_message` one at a
/// time: a fixed set of stripes, a lane (number, contact or address) hashed to one of them, so
/// it needs no clean-up. Across nodes the store's lane row orders the commits.
pub(crate) struct SendOrder {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for SendOrder {
    fn default() -> Self {
        SendOrder {
            stripes: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl SendOrder {
    async fn lock(&self, number: &PhoneNumberId, lane: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = foldhash::fast::FixedState::default().build_hasher();
        number.as_str().hash(&mut h);
        lane.hash(&mut h);
        let i = usize::try_from(h.finish() % self.stripes.len() as u64).unwrap_or(0);
        self.stripes[i].lock().await
    }
}

/// The result of `accept_message`.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub id: MessageId,
    /// `queued` for a new message; the current state when an idempotency key repeats.
    pub state: MessageState,
    /// False when an earlier request with the same idempotency key created the message.
    pub created: bool,
}

/// A contact's tags plus the built-in fields (`phone`, `name`) personalization can use.
pub struct ContactTags<'a> {
    pub tags: Option<&'a Tags>,
    pub phone: &'a str,
    pub name: Option<&'a str>,
}

impl TagLookup for ContactTags<'_> {
    fn tag(&self, name: &str) -> Option<Cow<'_, TagValue>> {
        if let Some(v) = self.tags.and_then(|t| t.tag(name)) {
            return Some(v);
        }
        match name {
            "phone" => Some(Cow::Owned(TagValue::String(self.phone.to_owned()))),
            "name" => self
                .name
                .map(|n| Cow::Owned(TagValue::String(n.to_owned()))),
            _ => None,
        }
    }
}

impl Engine {
    /// Checks and queues one message.
    pub async fn accept_message(
        &self,
        app: &ApplicationId,
        req: SendRequest,
    ) -> Result<Accepted, EngineError> {
        let (to, contact) = self.recipient(app, &req.to).await?;
        let phone_number_id = self
            .sending_number(app, req.phone_number_id.as_ref())
            .await?;
        let now = self.now();
        let content = match &req.body {
            SendBody::Template {
                name,
                language,
                variables,
            } => {
                self.render_template(app, name, language, variables, &to, contact.as_ref())
                    .await?
            }
            SendBody::Media {
                media_type,
                id,
                link,
                caption,
                filename,
                mime_type,
            } => {
                check_media(
                    media_type,
                    id.as_deref(),
                    link.as_deref(),
                    caption.as_deref(),
                )?;
                check_window(contact.as_ref(), &to, now, "media")?;
                MessageContent::Media {
                    media_type: media_type.clone(),
                    id: id.clone(),
                    link: link.clone(),
                    caption: caption.clone().filter(|c| !c.is_empty()),
                    filename: filename.clone(),
                    mime_type: mime_type.clone(),
                }
            }
            SendBody::Reaction { message_id, emoji } => {
                Wamid::parse(message_id).map_err(|e| {
                    EngineError::bad_request("invalid_message_id", e.to_string())
                        .field("reaction.message_id")
                })?;
                if emoji.chars().count() > 16 {
                    return Err(EngineError::bad_request(
                        "invalid_emoji",
                        "a reaction is one emoji (empty to remove the reaction)",
                    )
                    .field("reaction.emoji"));
                }
                check_window(contact.as_ref(), &to, now, "reaction")?;
                MessageContent::Reaction {
                    message_id: message_id.clone(),
                    emoji: emoji.clone(),
                }
            }
            SendBody::Text { text, preview_url } => {
                check_text(text)?;
                check_window(contact.as_ref(), &to, now, "text")?;
                // Free-form text may personalize too; a missing tag refuses the send.
                let rendered = render_text(text, &to, contact.as_ref())?;
                MessageContent::Text {
                    body: rendered,
                    preview_url: *preview_url,
                }
            }
        };
        // One contact's sends are committed one at a time on this node, their id and queue
        // time drawn inside: the lane place the store gives (commit order, every node) and
        // the thread's order (queue time, id) then agree for what one node accepts.
        let lane = contact.as_ref().map_or(to.as_str(), |c| c.id.as_str());
        let _in_order = self.send_order.lock(&phone_number_id, lane).await;
        let now = self.now();
        let id = MessageId::new();
        let outcome = self
            .store
            .insert_message(&NewMessage {
                id: id.clone(),
                application_id: app.clone(),
                phone_number_id: phone_number_id.clone(),
                contact_id: contact.as_ref().map(|c| c.id.clone()),
                to_phone: to.clone(),
                content,
                reply_to: req.reply_to,
                idempotency_key: req.idempotency_key,
                now,
            })
            .await?;
        match outcome {
            InsertOutcome::Created => {
                self.wake_senders(Some(&phone_number_id));
                Ok(Accepted {
                    id,
                    state: MessageState::Queued,
                    created: true,
                })
            }
            InsertOutcome::Existing(message) => Ok(Accepted {
                id: message.id,
                state: message.state,
                created: false,
            }),
        }
    }

    /// The address a send goes to and the contact it names. `to` is an E.164 phone or a
    /// business-scoped user id (BSUID, or parent BSUID): a BSUID of a contact whose phone
    /// Parley knows is sent by phone (`to`, as Meta recommends, META_2026 §3.8); otherwise
    /// the BSUID goes as `recipient`.
    pub(crate) async fn recipient(
        &self,
        app: &ApplicationId,
        to: &str,
    ) -> Result<(String, Option<ContactRecord>), EngineError> {
        if is_bsuid_address(to) {
            let bsuid = Bsuid::parse(to).map_err(|e| {
                EngineError::bad_request("invalid_recipient", e.to_string()).field("to")
            })?;
            let contact = self.store.contact_by_bsuid(app, bsuid.as_str()).await?;
            let address = contact
                .as_ref()
                .map_or_else(|| bsuid.as_str().to_owned(), |c| c.phone.clone());
            return Ok((address, contact));
        }
        let phone = E164::parse(to).map_err(|e| {
            EngineError::bad_request(
                "invalid_phone_number",
                format!("{e}; `to` is a phone number in international format or a business-scoped user id (BSUID) like `US.13491208655302741918`"),
            )
            .field("to")
        })?;
        let contact = self.store.contact_by_phone(app, phone.as_str()).await?;
        Ok((phone.as_str().to_owned(), contact))
    }

    pub(crate) async fn sending_number(
        &self,
        app: &ApplicationId,
        requested: Option<&PhoneNumberId>,
    ) -> Result<PhoneNumberId, EngineError> {
        let numbers = self.store.phone_numbers(app).await?;
        match requested {
            Some(id) => numbers
                .iter()
                .find(|n| &n.phone_number_id == id)
                .map(|n| n.phone_number_id.clone())
                .ok_or_else(|| EngineError::phone_number_not_found(id.as_str())),
            None => match numbers.as_slice() {
                [only] => Ok(only.phone_number_id.clone()),
                [] => Err(EngineError::new(
                    ErrorKind::Conflict,
                    "no_phone_number",
                    "this application has no WhatsApp number yet: connect one under Settings › Configure platforms",
                )),
                _ => Err(EngineError::unprocessable(
                    "phone_number_required",
                    "this application has several WhatsApp numbers: say which one sends with `phone_number_id`",
                )
                .field("phone_number_id")),
            },
        }
    }

    async fn render_template(
        &self,
        app: &ApplicationId,
        name: &str,
        language: &str,
        variables: &VariableInput,
        to: &str,
        contact: Option<&ContactRecord>,
    ) -> Result<MessageContent, EngineError> {
        let record = self.store.template(app, name, language).await?.ok_or_else(|| {
            EngineError::unprocessable(
                "template_not_found",
                format!(
                    "there is no template `{name}` in language `{language}`; check the name and language, or sync templates from Meta"
                ),
            )
            .field("template.name")
        })?;
        record.template.is_sendable().map_err(|e| {
            EngineError::unprocessable("template_not_approved", e.to_string())
                .field("template.name")
        })?;
        if record.template.category == TemplateCategory::Authentication && is_bsuid_address(to) {
            return Err(EngineError::unprocessable(
                "bsuid_recipient_not_supported",
                format!(
                    "`{name}` is an authentication template, and Parley knows this customer only by their business-scoped user id (BSUID): Meta refuses authentication templates to a BSUID (error 131062). Ask the customer for their phone number first (a REQUEST_CONTACT_INFO button), or send by phone."
                ),
            )
            .field("to"));
        }
        let bound = BoundTemplate::bind(&record.template, variables).map_err(|e| {
            EngineError::unprocessable(e.code(), e.to_string())
                .field(format!("template.{}", e.field()))
        })?;
        let lookup = ContactTags {
            tags: contact.map(|c| &c.tags),
            phone: phone_tag(to),
            name: contact.and_then(|c| c.name.as_deref()),
        };
        let rendered = bound.render(&lookup).map_err(|reason| {
            if let Some(e) = too_long(&reason, "template.variables") {
                return e;
            }
            EngineError::unprocessable(
                "personalization_failed",
                format!(
                    "cannot personalize for {}: {reason}. Give the expression a default, e.g. {{{{first_name|CapitalizeFirst|there}}}}, or set the tag on the contact",
                    to
                ),
            )
            .field("template.variables")
        })?;
        Ok(MessageContent::Template { template: rendered })
    }
}

/// A text message's rendered body: at most [`MAX_TEXT_CHARS`].
pub(crate) fn text_limit() -> Limit<'static> {
    Limit {
        variable: "text",
        part: "the text",
        part_limit: MAX_TEXT_CHARS,
        max_chars: MAX_TEXT_CHARS,
    }
}

/// A value over WhatsApp's length limit as the API's 422: `variable_too_long` naming the
/// variable (`{prefix}.{variable}`), or `text_too_long` for a text message's body. `None` for
/// other skip reasons.
pub(crate) fn too_long(reason: &SkipReason, prefix: &str) -> Option<EngineError> {
    let SkipReason::TooLong { variable, .. } = reason else {
        return None;
    };
    Some(if prefix.is_empty() {
        EngineError::unprocessable("text_too_long", format!("{reason}; nothing was stored"))
            .field(variable.as_str())
    } else {
        EngineError::unprocessable(VARIABLE_TOO_LONG, format!("{reason}; nothing was stored"))
            .field(format!("{prefix}.{variable}"))
    })
}

/// Free-form content (text, media, reactions) only inside the 24 h window.
fn check_window(
    contact: Option<&ContactRecord>,
    to: &str,
    now: i64,
    field: &str,
) -> Result<(), EngineError> {
    let last_inbound = contact.and_then(|c| c.last_inbound_at);
    if in_service_window(last_inbound.map(to_datetime), to_datetime(now)) {
        return Ok(());
    }
    Err(EngineError::unprocessable(
        "outside_service_window",
        format!(
            "{to} has not written to you in the last 24 hours, so WhatsApp only allows a template message now. Send a template, or wait until the customer writes."
        ),
    )
    .field(field))
}

fn check_media(
    media_type: &str,
    id: Option<&str>,
    link: Option<&str>,
    caption: Option<&str>,
) -> Result<(), EngineError> {
    if !MEDIA_TYPES.contains(&media_type) {
        return Err(EngineError::bad_request(
            "invalid_media_type",
            format!("`media.type` is one of {}", MEDIA_TYPES.join(", ")),
        )
        .field("media.type"));
    }
    match (id, link) {
        (Some(_), None) => {}
        (None, Some(link)) => {
            let rest = link
                .strip_prefix("https://")
                .or_else(|| link.strip_prefix("http://"));
            let ok = rest.is_some_and(|r| {
                !r.is_empty() && !r.starts_with('/') && !r.chars().any(char::is_whitespace)
            });
            if !ok || link.len() > 2048 {
                return Err(EngineError::bad_request(
                    "invalid_media_link",
                    "`media.link` is a public http(s) address of at most 2048 characters",
                )
                .field("media.link"));
            }
        }
        _ => {
            return Err(EngineError::bad_request(
                "media_source_required",
                "give the media as an upload or as a `link`, exactly one of them",
            )
            .field("media"));
        }
    }
    if let Some(caption) = caption {
        if matches!(media_type, "audio" | "sticker") && !caption.is_empty() {
            return Err(EngineError::bad_request(
                "caption_not_allowed",
                format!("WhatsApp shows no caption on {media_type} messages"),
            )
            .field("media.caption"));
        }
        let chars = caption.chars().count();
        if chars > MAX_CAPTION_CHARS {
            return Err(EngineError::bad_request(
                "caption_too_long",
                format!(
                    "the caption has {chars} characters; WhatsApp allows at most {MAX_CAPTION_CHARS}"
                ),
            )
            .field("media.caption"));
        }
    }
    Ok(())
}

fn check_text(text: &str) -> Result<(), EngineError> {
    if text.trim().is_empty() {
        return Err(EngineError::bad_request(
            "text_empty",
            "the text message is empty; give `text` some content",
        )
        .field("text"));
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(EngineError::bad_request(
            "text_too_long",
            format!("the text has {chars} characters; WhatsApp allows at most {MAX_TEXT_CHARS}"),
        )
        .field("text"));
    }
    Ok(())
}

/// The `phone` personalization tag of an address: the number, or empty for a BSUID.
pub(crate) fn phone_tag(address: &str) -> &str {
    if is_bsuid_address(address) {
        ""
    } else {
        address
    }
}

fn render_text(
    text: &str,
    to: &str,
    contact: Option<&ContactRecord>,
) -> Result<String, EngineError> {
    let dynamic = DynamicText::parse(text)
        .map_err(|e| EngineError::bad_request("expression_invalid", e.to_string()).field("text"))?;
    let lookup = ContactTags {
        tags: contact.map(|c| &c.tags),
        phone: phone_tag(to),
        name: contact.and_then(|c| c.name.as_deref()),
    };
    dynamic.render(&lookup, &text_limit()).map_err(|reason| {
        if let Some(e) = too_long(&reason, "") {
            return e;
        }
        EngineError::unprocessable(
            "personalization_failed",
            format!("cannot personalize the text for {to}: {reason}"),
        )
        .field("text")
    })
}
