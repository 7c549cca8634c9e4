"""HTTP/JSON wire layer: the AWS KMS JSON 1.1 protocol in front of the application services."""
