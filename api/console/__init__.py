"""The web console at /console (docs/console.md): server-rendered pages over the same services and the same
request pipeline as the /v1 query API."""
