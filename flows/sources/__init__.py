"""dlt sources of the ELT flow: the offline demo shop, a REST API and a SQL database."""
