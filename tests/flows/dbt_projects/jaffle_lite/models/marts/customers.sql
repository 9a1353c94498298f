select
    c.customer_id,
    c.first_name,
    c.last_name,
    count(o.order_id) as number_of_orders,
    coalesce(sum(o.amount), 0) as customer_lifetime_value
from {{ ref('stg_customers') }} as c
left join {{ ref('orders') }} as o on c.customer_id = o.customer_id
group by 1, 2, 3
