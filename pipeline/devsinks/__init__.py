"""Local fakes of the delivery providers (SMTP, Twilio, FCM, webhooks) for tests and dev."""
