"""carevault records: data zone: encrypts, stores and searches patient records with the key sent per request."""
