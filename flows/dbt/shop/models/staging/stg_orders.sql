select
    id as order_id,
    customer_id,
    cast(order_date as date) as order_date,
    status,
    {{ to_utc_timestamp('created_at') }} as created_at,
    {{ to_utc_timestamp('updated_at') }} as updated_at,
    _dlt_load_id as load_id
from {{ source('shop', 'orders') }}
