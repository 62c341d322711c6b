"""DKIM verifiers run by the tests (Mail::DKIM, mailauth) and the message they sign."""
