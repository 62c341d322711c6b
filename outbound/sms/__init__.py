"""Text messages: numbers, segments, texts, and the providers that send them."""
