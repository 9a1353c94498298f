select
    id as order_id,
    customer_id,
    cast(order_date as date) as order_date,
    status,
    cast(created_at as timestamp) as created_at,
    cast(updated_at as timestamp) as updated_at,
    _dlt_load_id as load_id
from {{ source('shop', 'orders') }}
