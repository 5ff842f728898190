pub mod health;
pub mod messages;
pub mod phone_numbers;
pub mod platforms;
pub mod templates;
pub mod webhooks;
