"""Config sources: a file polled for changes, or a ConfigMap watched through the API server; every
new config is validated before it is swapped in, and for a ConfigMap the outcome is an Event on it."""
