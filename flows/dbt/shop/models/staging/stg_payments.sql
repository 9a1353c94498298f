select
    id as payment_id,
    order_id,
    method,
    status,
    amount_cents,
    cast(amount_cents as decimal(18, 2)) / 100 as amount,
    cast(created_at as timestamp) as created_at,
    cast(updated_at as timestamp) as updated_at,
    _dlt_load_id as load_id
from {{ source('shop', 'payments') }}
