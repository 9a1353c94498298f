select
    id as customer_id,
    first_name,
    last_name,
    lower(email) as email,
    country,
    cast(created_at as timestamp) as created_at,
    cast(updated_at as timestamp) as updated_at,
    _dlt_load_id as load_id
from {{ source('shop', 'customers') }}
