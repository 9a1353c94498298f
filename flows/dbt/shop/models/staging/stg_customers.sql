select
    id as customer_id,
    first_name,
    last_name,
    lower(email) as email,
    country,
    {{ to_utc_timestamp('created_at') }} as created_at,
    {{ to_utc_timestamp('updated_at') }} as updated_at,
    _dlt_load_id as load_id
from {{ source('shop', 'customers') }}
