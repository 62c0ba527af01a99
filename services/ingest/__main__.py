"""`python -m services.ingest`: run the ingest API under uvicorn."""

from services.ingest.main import main

main()
